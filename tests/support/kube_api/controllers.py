"""Simulated controllers: workloads and their pods, ArgoCD self-heal, and the ApplicationSet controller.

What is modelled of ArgoCD:

- An Application self-heals while ``spec.syncPolicy.automated.selfHeal`` is true: when a managed
  workload's ``spec.replicas`` differs from the value its Git source declares (set from Python with
  ``Cluster.set_desired_replicas``), the replicas are reverted once the drift has lasted
  ``Timing.self_heal`` seconds. The annotation ``argocd.argoproj.io/skip-reconcile: "true"`` stops
  every reconciliation of that Application, as in ArgoCD 2.7 and later.
- The ApplicationSet controller replaces the ``spec`` of each Application it owns (through an
  ownerReference) with its template's ``spec`` once a difference has lasted ``Timing.applicationset``
  seconds. It does not when ``spec.syncPolicy.applicationsSync`` is ``create-only`` or
  ``create-delete``, the two policies that forbid updates. Values at the JSON pointers listed in
  ``spec.ignoreApplicationDifferences`` are kept. Generators, templating and template metadata are
  not modelled.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING

from tests.support.kube_api import objects, patches
from tests.support.kube_api.resources import ApiError

if TYPE_CHECKING:
    from tests.support.kube_api.cluster import Cluster

logger = logging.getLogger(__name__)

SKIP_RECONCILE_ANNOTATION = "argocd.argoproj.io/skip-reconcile"
UPDATE_FORBIDDING_POLICIES = {"create-only", "create-delete"}
WORKLOAD_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}


def _is_deleting(pod: dict) -> bool:
    return "deletionTimestamp" in pod["metadata"]


def _template_hash_of(pod: dict) -> str:
    """Return the template hash a pod was created from, for Deployment and StatefulSet pods alike."""
    labels = pod["metadata"].get("labels", {})
    if "pod-template-hash" in labels:
        return labels["pod-template-hash"]
    return labels.get("controller-revision-hash", "").rsplit("-", 1)[-1]


def _is_ready(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and not _is_deleting(pod)


def _without_zeros(status: dict, optional: set[str]) -> dict:
    """Drop the zero counts that the real API omits (``omitempty`` in its Go types)."""
    return {key: value for key, value in status.items() if not (key in optional and value == 0)}


class WorkloadController:
    """Keep the pods of every Deployment and StatefulSet at ``spec.replicas``, with start and stop delays."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.store = cluster.store
        self._due: dict[tuple[str, str], float] = {}

    def reconcile_all(self) -> None:
        for plural in WORKLOAD_KINDS:
            for workload in self.store.list(plural)[0]:
                self.reconcile(plural, workload)

    def start_pods_now(self, plural: str, namespace: str, name: str) -> None:
        """Create the pods of a new workload already Running, so that a test starts from a steady state."""
        workload = self.store.get(plural, namespace, name)
        for _ in range(workload["spec"].get("replicas", 1)):
            pod = self._create_pod(plural, workload, self._owned_pods(plural, workload))
            self.store.update("pods", namespace, pod["metadata"]["name"], self._mark_running)
            self._due.pop((namespace, pod["metadata"]["name"]), None)
        self._write_status(plural, self.store.get(plural, namespace, name))

    def reconcile(self, plural: str, workload: dict) -> None:
        self._finish_transitions(self._owned_pods(plural, workload))
        pods = self._owned_pods(plural, workload)
        current_hash = objects.template_hash(workload["spec"]["template"])
        for pod in pods:
            outdated = _template_hash_of(pod) != current_hash
            if outdated and not _is_deleting(pod):
                self._mark_deleting(pod)
        self._scale(plural, workload, self._owned_pods(plural, workload))
        self._write_status(plural, workload)

    # -- pods --------------------------------------------------------------------

    def _owned_pods(self, plural: str, workload: dict) -> list[dict]:
        namespace, name = workload["metadata"]["namespace"], workload["metadata"]["name"]
        owners = self.cluster.pod_owners
        return [pod for pod in self.store.list("pods", namespace)[0]
                if owners.get((namespace, pod["metadata"]["name"])) == (plural, name)]

    def _finish_transitions(self, pods: list[dict]) -> None:
        now = time.monotonic()
        for pod in pods:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            if key not in self._due or self._due[key] > now:
                continue
            del self._due[key]
            if _is_deleting(pod):
                self.store.delete("pods", *key)
                self.cluster.pod_owners.pop(key, None)
            else:
                self.store.update("pods", *key, self._mark_running)

    @staticmethod
    def _mark_running(pod: dict) -> dict:
        pod["status"] = objects.pod_running_status(pod)
        return pod

    def _mark_deleting(self, pod: dict) -> None:
        def mark(current: dict) -> dict:
            current["metadata"]["deletionTimestamp"] = objects.now_timestamp()
            current["metadata"]["deletionGracePeriodSeconds"] = 30
            return current

        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.store.update("pods", *key, mark)
        self._due[key] = time.monotonic() + self.cluster.timing.pod_stop

    def _create_pod(self, plural: str, workload: dict, pods: list[dict]) -> dict:
        namespace, name = workload["metadata"]["namespace"], workload["metadata"]["name"]
        template = workload["spec"]["template"]
        current_hash = objects.template_hash(template)
        labels = dict(template["metadata"].get("labels", {}))
        if plural == "statefulsets":
            existing_names = {pod["metadata"]["name"] for pod in pods}
            pod_name = next(f"{name}-{index}" for index in range(len(existing_names) + 1)
                            if f"{name}-{index}" not in existing_names)
            labels["statefulset.kubernetes.io/pod-name"] = pod_name
            labels["controller-revision-hash"] = f"{name}-{current_hash}"
            owner = objects.owner_reference("StatefulSet", "apps/v1", workload)
        else:
            pod_name = f"{name}-{current_hash}-{secrets.token_hex(3)[:5]}"
            labels["pod-template-hash"] = current_hash
            owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-{current_hash}",
                     "uid": workload["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        self.cluster.pod_owners[(namespace, pod_name)] = (plural, name)
        self.cluster.remember_pod_workload(namespace, pod_name, name)
        body = objects.pod_object(namespace, pod_name, labels, template["spec"]["containers"], owner)
        self._due[(namespace, pod_name)] = time.monotonic() + self.cluster.timing.pod_start
        return self.store.create("pods", body)

    def _scale(self, plural: str, workload: dict, pods: list[dict]) -> None:
        desired = workload["spec"].get("replicas", 1)
        active = [pod for pod in pods if not _is_deleting(pod)]
        for pod in sorted(active, key=lambda pod: _ordinal(pod), reverse=True)[:max(0, len(active) - desired)]:
            self._mark_deleting(pod)
        for _ in range(max(0, desired - len(active))):
            pods.append(self._create_pod(plural, workload, pods))

    # -- status ------------------------------------------------------------------

    def _write_status(self, plural: str, workload: dict) -> None:
        namespace, name = workload["metadata"]["namespace"], workload["metadata"]["name"]
        current_hash = objects.template_hash(workload["spec"]["template"])
        active = [pod for pod in self._owned_pods(plural, workload) if not _is_deleting(pod)]
        updated = [pod for pod in active if _template_hash_of(pod) == current_hash]
        ready = [pod for pod in active if _is_ready(pod)]
        counts = {"replicas": len(active), "updatedReplicas": len(updated), "readyReplicas": len(ready),
                  "availableReplicas": len([pod for pod in updated if _is_ready(pod)])}
        generation = workload["metadata"].get("generation", 1)
        if plural == "deployments":
            status = self._deployment_status(counts, generation, workload["spec"].get("replicas", 1))
        else:
            status = self._statefulset_status(counts, generation, f"{name}-{current_hash}")

        def write(current: dict) -> dict:
            current["status"] = status
            return current

        self.store.update(plural, namespace, name, write)

    @staticmethod
    def _deployment_status(counts: dict, generation: int, desired: int) -> dict:
        unavailable = max(0, desired - counts["availableReplicas"])
        available = "True" if counts["availableReplicas"] >= desired else "False"
        conditions = [
            {"type": "Available", "status": available, "reason": "MinimumReplicasAvailable"
             if available == "True" else "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ]
        status = {"observedGeneration": generation, **counts, "unavailableReplicas": unavailable,
                  "conditions": conditions}
        return _without_zeros(status, {"replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                                       "unavailableReplicas"})

    @staticmethod
    def _statefulset_status(counts: dict, generation: int, revision: str) -> dict:
        status = {"observedGeneration": generation, **counts, "currentReplicas": counts["updatedReplicas"],
                  "currentRevision": revision, "updateRevision": revision, "collisionCount": 0}
        return _without_zeros(status, {"updatedReplicas", "readyReplicas", "currentReplicas"})


def _ordinal(pod: dict) -> tuple[int, str]:
    """Sort key that puts the highest StatefulSet ordinal (or the newest-named pod) last."""
    name = pod["metadata"]["name"]
    suffix = name.rsplit("-", 1)[-1]
    return (int(suffix), name) if suffix.isdigit() else (0, pod["metadata"].get("creationTimestamp", "") + name)


class ApplicationController:
    """ArgoCD's self-heal of Applications, and the sync and health fields of their status."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.store = cluster.store
        self._drift_since: dict[tuple[str, str], float] = {}

    def reconcile_all(self) -> None:
        for application in self.store.list("applications")[0]:
            annotations = application["metadata"].get("annotations") or {}
            if annotations.get(SKIP_RECONCILE_ANNOTATION) == "true":
                continue
            self.reconcile(application)

    def reconcile(self, application: dict) -> None:
        key = (application["metadata"]["namespace"], application["metadata"]["name"])
        managed = self.cluster.desired_workloads(*key)
        drifted = [workload for workload in managed if self._live_replicas(workload) not in (None, workload.replicas)]
        automated = (application.get("spec", {}).get("syncPolicy") or {}).get("automated") or {}
        if not (drifted and automated.get("selfHeal")):
            self._drift_since.pop(key, None)
        elif time.monotonic() - self._drift_since.setdefault(key, time.monotonic()) >= self.cluster.timing.self_heal:
            self._heal(key, drifted)
            drifted = []
        self._write_status(key, managed, drifted)

    def _live_replicas(self, workload) -> int | None:
        live = self.store.find(self._plural(workload), workload.namespace, workload.name)
        return None if live is None else live["spec"].get("replicas", 1)

    @staticmethod
    def _plural(workload) -> str:
        return {kind: plural for plural, kind in WORKLOAD_KINDS.items()}[workload.kind]

    def _heal(self, key: tuple[str, str], drifted: list) -> None:
        for workload in drifted:
            def revert(current: dict, replicas: int = workload.replicas) -> dict:
                current["spec"]["replicas"] = replicas
                return current

            self.store.update(self._plural(workload), workload.namespace, workload.name, revert, keep_status=True)
            logger.debug("application %s/%s: self-heal set %s %s replicas to %d",
                         *key, workload.kind, workload.name, workload.replicas)
        self._drift_since.pop(key, None)
        self.cluster.self_heal_count += 1

    def _write_status(self, key: tuple[str, str], managed: list, drifted: list) -> None:
        resources = []
        healthy = True
        for workload in managed:
            live = self.store.find(self._plural(workload), workload.namespace, workload.name)
            ready = bool(live) and live.get("status", {}).get("readyReplicas", 0) >= workload.replicas
            healthy = healthy and ready
            resources.append({"group": "apps", "version": "v1", "kind": workload.kind,
                              "namespace": workload.namespace, "name": workload.name,
                              "status": "OutOfSync" if workload in drifted else "Synced",
                              "health": {"status": "Healthy" if ready else "Progressing"}})
        status = {"sync": {"status": "OutOfSync" if drifted else "Synced"},
                  "health": {"status": "Healthy" if healthy else "Progressing"}, "resources": resources}

        def write(current: dict) -> dict:
            current["status"] = status
            return current

        self.store.update("applications", *key, write)


class ApplicationSetController:
    """Revert the spec of owned Applications to the ApplicationSet's template, as the real controller does."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.store = cluster.store
        self._different_since: dict[tuple[str, str], float] = {}

    def reconcile_all(self) -> None:
        for appset in self.store.list("applicationsets")[0]:
            policy = (appset["spec"].get("syncPolicy") or {}).get("applicationsSync", "sync")
            if policy in UPDATE_FORBIDDING_POLICIES:
                continue
            for application in self._owned_applications(appset):
                self.reconcile(appset, application)

    def _owned_applications(self, appset: dict) -> list[dict]:
        def owned(application: dict) -> bool:
            return any(owner.get("kind") == "ApplicationSet" and owner.get("uid") == appset["metadata"]["uid"]
                       for owner in application["metadata"].get("ownerReferences", []))

        return self.store.list("applications", appset["metadata"]["namespace"], owned)[0]

    def reconcile(self, appset: dict, application: dict) -> None:
        key = (application["metadata"]["namespace"], application["metadata"]["name"])
        expected_spec = self._generated_spec(appset, application)
        if application.get("spec") == expected_spec:
            self._different_since.pop(key, None)
            return
        since = self._different_since.setdefault(key, time.monotonic())
        if time.monotonic() - since < self.cluster.timing.applicationset:
            return

        def replace_spec(current: dict) -> dict:
            current["spec"] = expected_spec
            return current

        self.store.update("applications", *key, replace_spec)
        self._different_since.pop(key, None)
        self.cluster.applicationset_revert_count += 1
        logger.debug("applicationset %s: reverted the spec of application %s/%s",
                     appset["metadata"]["name"], *key)

    @staticmethod
    def _generated_spec(appset: dict, application: dict) -> dict:
        expected_spec = copy.deepcopy(appset["spec"]["template"]["spec"])
        live = {"spec": application.get("spec", {})}
        for rule in appset["spec"].get("ignoreApplicationDifferences") or []:
            if rule.get("name") not in (None, "", application["metadata"]["name"]):
                continue
            # NOTE: only jsonPointers rules are modelled, so jqPathExpressions rules are ignored.
            for pointer in rule.get("jsonPointers") or []:
                _copy_pointer(live, {"spec": expected_spec}, pointer)
        return expected_spec


def _copy_pointer(source: dict, target: dict, pointer: str) -> None:
    """Make ``target`` hold the value ``source`` has at ``pointer`` (or nothing where ``source`` has nothing)."""
    try:
        value = patches.resolve(source, pointer)
    except patches.PatchError:
        operations = [{"op": "remove", "path": pointer}]
    else:
        operations = [{"op": "add", "path": pointer, "value": value}]
    try:
        target.update(patches.json_patch(target, operations))
    except patches.PatchError:
        return


class ControllerLoop:
    """Run every controller of a cluster in one background thread, once per ``Timing.tick``."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.controllers = (cluster.workloads, ApplicationController(cluster), ApplicationSetController(cluster))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kube-standin-{cluster.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.cluster.timing.tick):
            self._reconcile_once()
            self.cluster.count_reconcile_pass()

    def _reconcile_once(self) -> None:
        for controller in self.controllers:
            try:
                controller.reconcile_all()
            except ApiError as error:
                # A client changed the object between the controller's read and write, so the next tick retries.
                logger.debug("cluster %s: %s: %s", self.cluster.name, type(controller).__name__, error.message)
            except Exception:
                logger.exception("cluster %s: %s failed", self.cluster.name, type(controller).__name__)
