"""Builders of the JSON objects the stand-in serves, shaped like the real API's."""

from __future__ import annotations

import copy
import hashlib
import json

from tests.support.kube_api.store import now_timestamp

NODE_NAME = "standin-node"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def template_hash(template: dict) -> str:
    """Return a short stable hash of a pod template, as in the ``pod-template-hash`` label."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def containers_spec(container_names) -> list[dict]:
    return [{"name": name, "image": f"standin.invalid/{name}:latest"} for name in container_names]


def namespace_object(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def pod_object(namespace: str, name: str, labels: dict, containers: list[dict],
               owner: dict | None = None) -> dict:
    """Return a Pending pod, which ``pod_running_status`` turns Running."""
    metadata = {"name": name, "namespace": namespace, "labels": dict(labels),
                "annotations": {DEFAULT_CONTAINER_ANNOTATION: containers[0]["name"]}}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "metadata": metadata,
        "spec": {"containers": copy.deepcopy(containers), "nodeName": NODE_NAME, "restartPolicy": "Always"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    }


def pod_running_status(pod: dict) -> dict:
    started = now_timestamp()
    containers = pod["spec"]["containers"]
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": started}
                  for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
    statuses = [{"name": container["name"], "image": container["image"], "ready": True, "started": True,
                 "restartCount": 0, "state": {"running": {"startedAt": started}}}
                for container in containers]
    return {"phase": "Running", "conditions": conditions, "containerStatuses": statuses,
            "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": started}


def owner_reference(kind: str, api_version: str, obj: dict) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def workload_object(kind: str, namespace: str, name: str, replicas: int, labels: dict,
                    containers: list[dict]) -> dict:
    """Return a Deployment or StatefulSet whose selector matches ``labels``."""
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": copy.deepcopy(containers)}},
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
        spec["podManagementPolicy"] = "OrderedReady"
        spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    else:
        spec["strategy"] = {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    return {"metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}, "spec": spec,
            "status": {}}


def application_object(namespace: str, name: str, spec: dict, annotations: dict | None,
                       owner: dict | None) -> dict:
    metadata = {"name": name, "namespace": namespace, "annotations": dict(annotations or {})}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"metadata": metadata, "spec": copy.deepcopy(spec),
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}}


def application_spec(destination_namespace: str, self_heal: bool, prune: bool,
                     repo_url: str = "https://git.standin.invalid/deploy.git") -> dict:
    """Return an Application spec with automated sync. Nothing contacts its repository URL."""
    return {
        "project": "default",
        "source": {"repoURL": repo_url, "path": destination_namespace, "targetRevision": "HEAD"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": destination_namespace},
        "syncPolicy": {"automated": {"selfHeal": self_heal, "prune": prune}},
    }


def applicationset_object(namespace: str, name: str, template_spec: dict, applications_sync: str | None,
                          ignore_differences: list[dict] | None) -> dict:
    spec = {
        "generators": [{"list": {"elements": []}}],
        "template": {"metadata": {"name": "{{name}}"}, "spec": copy.deepcopy(template_spec)},
    }
    if applications_sync:
        spec["syncPolicy"] = {"applicationsSync": applications_sync}
    if ignore_differences:
        spec["ignoreApplicationDifferences"] = copy.deepcopy(ignore_differences)
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": {}}
