"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on plain JSON documents."""

from __future__ import annotations

import copy

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(ValueError):
    """A patch that cannot apply to the document, which the API reports as 422 Invalid."""


def merge_patch(document, patch):
    """Return ``document`` with the merge patch applied: objects merge, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}: it must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _child(container, token: str, pointer: str):
    if isinstance(container, dict):
        if token not in container:
            raise PatchError(f"path {pointer} not found")
        return container[token]
    if isinstance(container, list):
        return container[_list_index(container, token, pointer, allow_end=False)]
    raise PatchError(f"path {pointer} not found")


def _list_index(container: list, token: str, pointer: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r} in {pointer}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of range in {pointer}")
    return index


def resolve(document, pointer: str):
    """Return the value at ``pointer``, or raise PatchError when it does not exist."""
    value = document
    for token in parse_pointer(pointer):
        value = _child(value, token, pointer)
    return value


def _parent(document, pointer: str):
    tokens = parse_pointer(pointer)
    if not tokens:
        raise PatchError("the whole document cannot be the target of this operation")
    parent = document
    for token in tokens[:-1]:
        parent = _child(parent, token, pointer)
    return parent, tokens[-1]


def _add(document, pointer: str, value):
    parent, token = _parent(document, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, token, pointer, allow_end=True), value)
    else:
        raise PatchError(f"path {pointer} not found")


def _remove(document, pointer: str):
    parent, token = _parent(document, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path {pointer} not found")
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_list_index(parent, token, pointer, allow_end=False))
    raise PatchError(f"path {pointer} not found")


def _apply_operation(document, operation: dict):
    op = operation.get("op")
    path = operation.get("path")
    if not isinstance(path, str):
        raise PatchError(f"operation {op!r} has no path")
    if op == "add":
        _add(document, path, copy.deepcopy(operation.get("value")))
    elif op == "remove":
        _remove(document, path)
    elif op == "replace":
        _remove(document, path)
        _add(document, path, copy.deepcopy(operation.get("value")))
    elif op == "move":
        _add(document, path, _remove(document, operation["from"]))
    elif op == "copy":
        _add(document, path, copy.deepcopy(resolve(document, operation["from"])))
    elif op == "test":
        if resolve(document, path) != operation.get("value"):
            raise PatchError(f"testing value {path} failed")
    else:
        raise PatchError(f"unknown JSON patch operation {op!r}")


def json_patch(document, operations):
    """Return a copy of ``document`` with the RFC 6902 operations applied in order, all or nothing."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict):
            raise PatchError("each JSON patch operation must be an object")
        _apply_operation(result, operation)
    return result
