"""Find what a killed refresh left changed on the cluster, with read-only ``kubectl get``.

The lifecycle script records every value it changes as an annotation on the changed object
(``ops/sandbox/lib/argocd.sh``). An annotation that is still there after the run means the
change is still in place, until ``invoke recover`` or the next refresh puts it back.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess

from checkpoint.settings import LifecycleSettings

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "sandbox-lifecycle.checkpoint/"
PAUSED_SINCE = ANNOTATION_PREFIX + "paused-since"
SAVED_SYNC_POLICY = ANNOTATION_PREFIX + "saved-sync-policy"
SAVED_REPLICAS = ANNOTATION_PREFIX + "saved-replicas"
SCALED_SINCE = ANNOTATION_PREFIX + "scaled-to-zero-since"
DEFAULT_LOCK_NAME = "sandbox-lifecycle"
KUBECTL_TIMEOUT_SECONDS = 30
RECOVER_HINT = "run invoke recover"


def cluster_leftovers(lifecycle: LifecycleSettings) -> list[str]:
    """Return one line per change a refresh left on the cluster; empty for the local transport."""
    if lifecycle.transport != "kubectl":
        return []
    kube = lifecycle.kube_env
    env = {**os.environ, **kube}
    leftovers: list[str] = []

    application = kube.get("ARGOCD_APPLICATION")
    if application:
        context = kube.get("ARGOCD_KUBE_CONTEXT") or kube.get("SANDBOX_KUBE_CONTEXT", "")
        found = _get(env, context, kube.get("ARGOCD_NAMESPACE", "argocd"),
                     f"applications.argoproj.io/{application}")
        leftovers += _paused(found, f"Application {application}")
        for owner in (found or {}).get("metadata", {}).get("ownerReferences", []):
            if owner.get("kind") in ("ApplicationSet", "Application"):
                resource = f"{owner['kind'].lower()}s.argoproj.io/{owner['name']}"
                leftovers += _paused(_get(env, context, kube.get("ARGOCD_NAMESPACE", "argocd"), resource),
                                     f"{owner['kind']} {owner['name']}")

    context, namespace = kube.get("SANDBOX_KUBE_CONTEXT", ""), kube.get("SANDBOX_NAMESPACE", "")
    workload = kube.get("SANDBOX_APP_WORKLOAD")
    if workload:
        annotations = _annotations(_get(env, context, namespace, workload))
        if SAVED_REPLICAS in annotations:
            leftovers.append(f"{workload} scaled to 0 since {annotations.get(SCALED_SINCE, 'an unknown time')}, "
                             f"recorded replicas {annotations[SAVED_REPLICAS]}: {RECOVER_HINT}")

    lease = _get(env, context, namespace, f"leases.coordination.k8s.io/{DEFAULT_LOCK_NAME}")
    if lease:
        spec = lease.get("spec", {})
        leftovers.append(f"refresh lock held by {spec.get('holderIdentity', 'unknown')} since "
                         f"{spec.get('acquireTime', 'an unknown time')}")
    return leftovers


def _paused(obj: dict | None, label: str) -> list[str]:
    annotations = _annotations(obj)
    if SAVED_SYNC_POLICY not in annotations:
        return []
    return [f"{label}: self-heal paused since {annotations.get(PAUSED_SINCE, 'an unknown time')}, "
            f"recorded sync policy {annotations[SAVED_SYNC_POLICY]}: {RECOVER_HINT}"]


def _annotations(obj: dict | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _get(env: dict[str, str], context: str, namespace: str, resource: str) -> dict | None:
    """Return the object, None when it does not exist; raise LeftoverCheckFailed on another error."""
    command = ["kubectl", "--context", context, "--namespace", namespace, "get", resource,
               "--ignore-not-found", "-o", "json"]
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LeftoverCheckFailed(f"kubectl get {resource} failed: {error}") from None
    if result.returncode != 0:
        first_line = (result.stderr.strip().splitlines() or ["no error output"])[0]
        raise LeftoverCheckFailed(f"kubectl get {resource} in context {context} failed: {first_line}")
    return json.loads(result.stdout) if result.stdout.strip() else None


class LeftoverCheckFailed(Exception):
    """kubectl could not read an object that the leftover check needs."""
