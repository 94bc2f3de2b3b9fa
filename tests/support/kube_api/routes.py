"""URL parsing and the REST verbs on objects: get, list, create, update, patch, delete, and ``scale``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.support.kube_api import patches, resources
from tests.support.kube_api.resources import ApiError, ResourceType, bad_request, invalid, method_not_allowed
from tests.support.kube_api.label_selectors import field_matcher, label_matcher
from tests.support.kube_api.store import Store

PATCH_TYPES = {patches.MERGE_PATCH, patches.STRATEGIC_MERGE_PATCH, patches.JSON_PATCH, patches.APPLY_PATCH}


@dataclass
class Target:
    """The resource a request path names: its type, and a namespace, name and subresource when given."""

    resource_type: ResourceType
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


@dataclass
class Reply:
    status: int
    body: dict
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


def parse_target(segments: list[str]) -> Target | None:
    """Parse ``api/v1/...`` or ``apis/GROUP/VERSION/...`` path segments into a Target."""
    if segments[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 3:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        return None
    resource_type = resources.find_resource_type(group, version, rest[0])
    if resource_type is None or (namespace is not None and not resource_type.namespaced):
        return None
    target = Target(resource_type, namespace, *rest[1:])
    if target.subresource and target.subresource not in resource_type.subresources:
        return None
    return target


def decode_body(body: bytes) -> object:
    try:
        return json.loads(body or b"null")
    except ValueError as error:
        raise bad_request(f"invalid JSON in the request body: {error}") from error


def _require_verb(target: Target, verb: str, method: str) -> None:
    if verb not in target.resource_type.verbs:
        raise method_not_allowed(method)


def _validate(resource_type: ResourceType, obj: dict) -> None:
    """Raise the real API's 422 Invalid for a negative or non-integer ``spec.replicas``."""
    if resource_type.plural in ("deployments", "statefulsets"):
        replicas = obj.get("spec", {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(resource_type, obj["metadata"].get("name", ""),
                          f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
                          field="spec.replicas")


class Routes:
    """The REST verbs of one cluster's store."""

    def __init__(self, store: Store):
        self.store = store

    # -- collections ---------------------------------------------------------------

    def list(self, target: Target, query: dict[str, str]) -> Reply:
        _require_verb(target, "list", "GET")
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"), target.resource_type.plural)
        items, resource_version = self.store.list(target.resource_type.plural, target.namespace,
                                                  lambda obj: labels(obj) and fields(obj))
        body = {"kind": f"{target.resource_type.kind}List", "apiVersion": target.resource_type.api_version,
                "metadata": {"resourceVersion": str(resource_version)}, "items": items}
        return Reply(200, body)

    def create(self, target: Target, body: bytes) -> Reply:
        _require_verb(target, "create", "POST")
        obj = decode_body(body)
        if not isinstance(obj, dict):
            raise bad_request("the request body must be a JSON object")
        metadata = obj.setdefault("metadata", {})
        if target.namespace:
            if metadata.get("namespace", target.namespace) != target.namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            metadata["namespace"] = target.namespace
        _validate(target.resource_type, obj)
        return Reply(201, self.store.create(target.resource_type.plural, obj))

    # -- single objects ------------------------------------------------------------

    def get(self, target: Target) -> Reply:
        _require_verb(target, "get", "GET")
        return Reply(200, self.store.get(target.resource_type.plural, target.namespace, target.name))

    def update(self, target: Target, body: bytes) -> Reply:
        _require_verb(target, "update", "PUT")
        obj = decode_body(body)
        if not isinstance(obj, dict):
            raise bad_request("the request body must be a JSON object")
        if (obj.get("metadata") or {}).get("name") != target.name:
            raise bad_request("the name of the object does not match the name on the URL")
        _validate(target.resource_type, obj)
        return Reply(200, self._store_update(target, lambda current: obj))

    def patch(self, target: Target, body: bytes, content_type: str) -> Reply:
        _require_verb(target, "patch", "PATCH")
        apply_patch = self._patch_function(target.resource_type, decode_body(body), content_type)

        def change(current: dict) -> dict:
            patched = apply_patch(current)
            _validate(target.resource_type, patched)
            return patched

        return Reply(200, self._store_update(target, change))

    def delete(self, target: Target) -> Reply:
        _require_verb(target, "delete", "DELETE")
        deleted = self.store.delete(target.resource_type.plural, target.namespace, target.name)
        if target.resource_type.plural == "pods":
            return Reply(200, deleted)
        details = {"name": target.name, "kind": target.resource_type.plural, "uid": deleted["metadata"]["uid"]}
        if target.resource_type.group:
            details["group"] = target.resource_type.group
        return Reply(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                           "details": details})

    def _store_update(self, target: Target, change) -> dict:
        return self.store.update(target.resource_type.plural, target.namespace, target.name, change,
                                 keep_status=target.resource_type.has_status_subresource)

    def _patch_function(self, resource_type: ResourceType, patch: object, content_type: str):
        media_type = content_type.split(";")[0].strip()
        custom = resource_type.group in resources.CUSTOM_RESOURCE_GROUPS
        if media_type not in PATCH_TYPES or (custom and media_type == patches.STRATEGIC_MERGE_PATCH):
            # Custom resources have no strategic merge schema, so the real API rejects that type for them.
            accepted = sorted(PATCH_TYPES - ({patches.STRATEGIC_MERGE_PATCH} if custom else set()))
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types include: "
                           f"{', '.join(accepted)}")
        if media_type == patches.APPLY_PATCH:
            # NOTE: the real API accepts server-side apply, but the stand-in does not implement it.
            raise ApiError(415, "UnsupportedMediaType", "server-side apply is not supported by this stand-in")
        if media_type == patches.JSON_PATCH:
            return lambda current: _checked(lambda: patches.json_patch(current, patch), resource_type, current)
        # NOTE: a strategic merge patch is applied as a JSON merge patch, so lists are replaced, never merged by key.
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        return lambda current: patches.merge_patch(current, patch)

    # -- the scale subresource -----------------------------------------------------

    def get_scale(self, target: Target) -> Reply:
        workload = self.store.get(target.resource_type.plural, target.namespace, target.name)
        return Reply(200, scale_object(workload))

    def update_scale(self, target: Target, body: bytes, content_type: str | None) -> Reply:
        """Apply a PUT (``content_type`` None) or a PATCH to the Scale, then write its replicas to the workload."""
        incoming = decode_body(body)
        if content_type is None:
            def new_scale(scale: dict) -> dict:
                if not isinstance(incoming, dict):
                    raise bad_request("the request body must be a JSON object")
                return incoming
        else:
            new_scale = self._patch_function(target.resource_type, incoming, content_type)

        def change(workload: dict) -> dict:
            scale = new_scale(scale_object(workload))
            replicas = (scale.get("spec") or {}).get("replicas", 0)
            requested_version = (scale.get("metadata") or {}).get("resourceVersion")
            workload["spec"]["replicas"] = replicas
            workload["metadata"]["resourceVersion"] = requested_version or workload["metadata"]["resourceVersion"]
            _validate(target.resource_type, workload)
            return workload

        updated = self.store.update(target.resource_type.plural, target.namespace, target.name, change,
                                    keep_status=True)
        return Reply(200, scale_object(updated))


def _checked(function, resource_type: ResourceType, current: dict):
    try:
        return function()
    except patches.PatchError as error:
        raise ApiError(422, "Invalid", f"the JSON patch cannot be applied to {resource_type.kind} "
                                       f"\"{current['metadata']['name']}\": {error}") from error


def scale_object(workload: dict) -> dict:
    """Return the ``autoscaling/v1`` Scale of a Deployment or StatefulSet."""
    metadata = workload["metadata"]
    selector = ",".join(f"{key}={value}" for key, value in
                        sorted(workload["spec"]["selector"].get("matchLabels", {}).items()))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {key: metadata[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                    "creationTimestamp") if key in metadata},
        "spec": {"replicas": workload["spec"].get("replicas", 1)},
        "status": {"replicas": workload.get("status", {}).get("replicas", 0), "selector": selector},
    }
