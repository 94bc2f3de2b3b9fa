"""The smallest OpenAPI v3 documents that let kubectl choose server-side field validation.

kubectl 1.32 reads ``/openapi/v3`` before ``create``, ``apply`` and ``replace``: it looks for a
PATCH operation tagged with the object's group, version and kind (the
``x-kubernetes-group-version-kind`` extension) that lists a ``fieldValidation`` query parameter.
When found, kubectl sends ``fieldValidation=Strict`` and leaves validation to the server, so it needs
no schemas. Without these documents kubectl refuses to create objects unless ``--validate=false``.
"""

from __future__ import annotations

import hashlib
import json

from tests.support.kube_api.resources import RESOURCE_TYPES, ResourceType, group_versions


def _path_prefix(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _item_path(resource_type: ResourceType) -> str:
    prefix = "/" + _path_prefix(resource_type.group, resource_type.version)
    if resource_type.namespaced:
        return f"{prefix}/namespaces/{{namespace}}/{resource_type.plural}/{{name}}"
    return f"{prefix}/{resource_type.plural}/{{name}}"


def _patch_operation(resource_type: ResourceType) -> dict:
    return {
        "operationId": f"patch{resource_type.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": resource_type.group, "version": resource_type.version,
                                            "kind": resource_type.kind},
        "parameters": [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                       for name in ("dryRun", "fieldManager", "fieldValidation")],
        "responses": {"200": {"description": "OK"}},
    }


def group_version_document(group: str, version: str) -> dict | None:
    served = [item for item in RESOURCE_TYPES if (item.group, item.version) == (group, version)]
    if not served:
        return None
    paths = {_item_path(item): {"patch": _patch_operation(item)} for item in served}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"}, "paths": paths,
            "components": {"schemas": {}}}


def root_document() -> dict:
    paths = {}
    for group, versions in group_versions().items():
        for version in versions:
            document = json.dumps(group_version_document(group, version), sort_keys=True).encode()
            digest = hashlib.sha512(document).hexdigest()[:64].upper()
            prefix = _path_prefix(group, version)
            paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest}"}
    return {"paths": paths}
