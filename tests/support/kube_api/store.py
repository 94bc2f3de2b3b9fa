"""The object store of one stand-in cluster: resourceVersion, generation, and the event log that watches read."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from tests.support.kube_api.resources import (
    ResourceType,
    already_exists,
    conflict,
    invalid,
    not_found,
    resource_type_of_plural,
)

# Groups whose objects carry metadata.generation, bumped on every change outside metadata and status.
GENERATION_GROUPS = {"apps", "argoproj.io"}


def now_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    plural: str
    type: str
    object: dict


def _key(plural: str, namespace: str | None, name: str) -> tuple[str, str, str]:
    return plural, namespace or "", name


def _body_without_metadata(obj: dict) -> dict:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


class Store:
    """All objects of one cluster, keyed by (plural, namespace, name), with one resourceVersion counter.

    Every method returns deep copies, so callers never share state with the store.
    """

    def __init__(self):
        self._condition = threading.Condition()
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._events: list[WatchEvent] = []
        self._resource_version = 0
        self._closed = False

    # -- reads -------------------------------------------------------------------

    def get(self, plural: str, namespace: str | None, name: str) -> dict:
        with self._condition:
            found = self._objects.get(_key(plural, namespace, name))
            if found is None:
                raise not_found(resource_type_of_plural(plural), name)
            return copy.deepcopy(found)

    def find(self, plural: str, namespace: str | None, name: str) -> dict | None:
        with self._condition:
            found = self._objects.get(_key(plural, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def list(self, plural: str, namespace: str | None = None,
             predicate: Callable[[dict], bool] = lambda obj: True) -> tuple[list[dict], int]:
        """Return the matching objects sorted by namespace and name, and the current resourceVersion."""
        with self._condition:
            items = [copy.deepcopy(obj) for (kind, ns, _), obj in sorted(self._objects.items())
                     if kind == plural and (not namespace or ns == namespace) and predicate(obj)]
            return items, self._resource_version

    def namespaces(self) -> set[str]:
        with self._condition:
            return {ns for (_, ns, _) in self._objects if ns}

    # -- writes ------------------------------------------------------------------

    def create(self, plural: str, obj: dict) -> dict:
        resource_type = resource_type_of_plural(plural)
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        if not name:
            raise invalid(resource_type, "", "metadata.name: Required value: name is required")
        obj["apiVersion"] = resource_type.api_version
        obj["kind"] = resource_type.kind
        with self._condition:
            key = _key(plural, metadata.get("namespace"), name)
            if key in self._objects:
                raise already_exists(resource_type, name)
            metadata.pop("resourceVersion", None)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now_timestamp()
            if resource_type.group in GENERATION_GROUPS:
                metadata["generation"] = 1
            return self._commit(plural, key, obj, "ADDED")

    def update(self, plural: str, namespace: str | None, name: str, change: Callable[[dict], dict],
               *, keep_status: bool = False) -> dict:
        """Replace an object with ``change(current)``, atomically.

        A resourceVersion in the new object must equal the stored one (optimistic concurrency),
        otherwise the update fails with 409 Conflict. ``keep_status`` makes the stored status win,
        as the main resource of a type with a status subresource does.
        """
        resource_type = resource_type_of_plural(plural)
        with self._condition:
            key = _key(plural, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise not_found(resource_type, name)
            updated = change(copy.deepcopy(current))
            self._check_resource_version(resource_type, current, updated)
            self._carry_system_fields(resource_type, current, updated, keep_status)
            if updated == current:
                return copy.deepcopy(current)
            return self._commit(plural, key, updated, "MODIFIED")

    def delete(self, plural: str, namespace: str | None, name: str) -> dict:
        with self._condition:
            key = _key(plural, namespace, name)
            current = self._objects.pop(key, None)
            if current is None:
                raise not_found(resource_type_of_plural(plural), name)
            self._resource_version += 1
            current["metadata"]["resourceVersion"] = str(self._resource_version)
            self._record(plural, "DELETED", current)
            return copy.deepcopy(current)

    def _check_resource_version(self, resource_type: ResourceType, current: dict, updated: dict) -> None:
        wanted = (updated.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise conflict(resource_type, current["metadata"]["name"])

    def _carry_system_fields(self, resource_type: ResourceType, current: dict, updated: dict,
                             keep_status: bool) -> None:
        metadata = updated.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if field in current["metadata"]:
                metadata[field] = current["metadata"][field]
            else:
                metadata.pop(field, None)
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        updated["apiVersion"] = resource_type.api_version
        updated["kind"] = resource_type.kind
        if keep_status:
            if "status" in current:
                updated["status"] = copy.deepcopy(current["status"])
            else:
                updated.pop("status", None)
        spec_changed = _body_without_metadata(current) != _body_without_metadata(updated)
        if resource_type.group in GENERATION_GROUPS and spec_changed:
            metadata["generation"] = current["metadata"].get("generation", 1) + 1

    def _commit(self, plural: str, key: tuple[str, str, str], obj: dict, event_type: str) -> dict:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        self._objects[key] = obj
        self._record(plural, event_type, obj)
        return copy.deepcopy(obj)

    def _record(self, plural: str, event_type: str, obj: dict) -> None:
        self._events.append(WatchEvent(self._resource_version, plural, event_type, copy.deepcopy(obj)))
        self._condition.notify_all()

    # -- watches -----------------------------------------------------------------

    def wait_for_events(self, plural: str, after: int, deadline: float) -> list[WatchEvent]:
        """Block until events of ``plural`` newer than ``after`` exist, the deadline passes, or the store closes."""
        with self._condition:
            while not self._closed:
                events = [event for event in self._events
                          if event.resource_version > after and event.plural == plural]
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                self._condition.wait(min(remaining, 1.0))
            return []

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every watch so that it ends its response."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
