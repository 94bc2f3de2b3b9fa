"""The resource types the stand-in serves, their discovery documents, and API errors as Status objects."""

from __future__ import annotations

from dataclasses import dataclass, field

AGGREGATED_DISCOVERY_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
SCALE_KIND = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ResourceType:
    """One served resource, such as ``deployments`` in ``apps/v1``."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = ("get", "list", "watch", "patch", "update")
    short_names: tuple[str, ...] = ()
    subresources: dict[str, dict] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_name(self) -> str:
        """The name that real API errors use, such as ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status_subresource(self) -> bool:
        return "status" in self.subresources


def _status_subresource(kind: str) -> dict:
    return {"kind": kind, "verbs": ("get", "patch", "update")}


def _scale_subresource() -> dict:
    return {**SCALE_KIND, "verbs": ("get", "patch", "update")}


RESOURCE_TYPES = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", namespaced=False,
                 verbs=("get", "list", "watch"), short_names=("ns",)),
    ResourceType("", "v1", "pods", "pod", "Pod", verbs=("get", "list", "watch", "delete"),
                 short_names=("po",),
                 subresources={"exec": {"kind": "PodExecOptions", "verbs": ("create", "get")},
                               "status": _status_subresource("Pod")}),
    ResourceType("apps", "v1", "deployments", "deployment", "Deployment", short_names=("deploy",),
                 subresources={"scale": _scale_subresource(), "status": _status_subresource("Deployment")}),
    ResourceType("apps", "v1", "statefulsets", "statefulset", "StatefulSet", short_names=("sts",),
                 subresources={"scale": _scale_subresource(), "status": _status_subresource("StatefulSet")}),
    # ArgoCD's CRDs declare no status subresource, so status is written through the main resource.
    ResourceType("argoproj.io", "v1alpha1", "applications", "application", "Application",
                 short_names=("app", "apps")),
    ResourceType("argoproj.io", "v1alpha1", "applicationsets", "applicationset", "ApplicationSet",
                 short_names=("appset", "appsets")),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease",
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
)

CUSTOM_RESOURCE_GROUPS = {"argoproj.io"}


def find_resource_type(group: str, version: str, plural: str) -> ResourceType | None:
    for resource_type in RESOURCE_TYPES:
        if (resource_type.group, resource_type.version, resource_type.plural) == (group, version, plural):
            return resource_type
    return None


def resource_type_of_plural(plural: str) -> ResourceType:
    for resource_type in RESOURCE_TYPES:
        if resource_type.plural == plural:
            return resource_type
    raise KeyError(plural)


def group_versions() -> dict[str, list[str]]:
    """Map each group (``""`` is the core group) to its served versions."""
    versions: dict[str, list[str]] = {}
    for resource_type in RESOURCE_TYPES:
        served = versions.setdefault(resource_type.group, [])
        if resource_type.version not in served:
            served.append(resource_type.version)
    return versions


# -- errors ------------------------------------------------------------------------


class ApiError(Exception):
    """An error that the API returns as a ``Status`` object with an HTTP status code."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(resource_type: ResourceType, name: str) -> dict:
    details = {"name": name, "kind": resource_type.plural}
    if resource_type.group:
        details["group"] = resource_type.group
    return details


def not_found(resource_type: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource_type.qualified_name} "{name}" not found',
                    _details(resource_type, name))


def already_exists(resource_type: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource_type.qualified_name} "{name}" already exists',
                    _details(resource_type, name))


def conflict(resource_type: ResourceType, name: str) -> ApiError:
    message = (f'Operation cannot be fulfilled on {resource_type.qualified_name} "{name}": the object has '
               "been modified; please apply your changes to the latest version and try again")
    return ApiError(409, "Conflict", message, _details(resource_type, name))


def unknown_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})", {})


def invalid(resource_type: ResourceType, name: str, message: str, field: str | None = None) -> ApiError:
    """Return a 422 Invalid error; kubectl prints each cause, naming its ``field``."""
    full_message = f"{field}: {message}" if field else message
    cause = {"reason": "FieldValueInvalid", "message": message}
    if field:
        cause["field"] = field
    details = {**_details(resource_type, name), "kind": resource_type.kind, "causes": [cause]}
    return ApiError(422, "Invalid", f'{resource_type.kind} "{name}" is invalid: {full_message}', details)


# -- discovery ---------------------------------------------------------------------


def _legacy_resource(resource_type: ResourceType) -> dict:
    entry = {
        "name": resource_type.plural,
        "singularName": resource_type.singular,
        "namespaced": resource_type.namespaced,
        "kind": resource_type.kind,
        "verbs": list(resource_type.verbs),
    }
    if resource_type.short_names:
        entry["shortNames"] = list(resource_type.short_names)
    return entry


def _legacy_subresource(resource_type: ResourceType, name: str, spec: dict) -> dict:
    entry = {
        "name": f"{resource_type.plural}/{name}",
        "singularName": "",
        "namespaced": resource_type.namespaced,
        "kind": spec["kind"],
        "verbs": list(spec["verbs"]),
    }
    # The scale client reads the Scale type's group and version from these two fields.
    if "group" in spec:
        entry["group"] = spec["group"]
        entry["version"] = spec["version"]
    return entry


def resource_list(group: str, version: str) -> dict | None:
    """Return the ``APIResourceList`` of one group version, or None when it is not served."""
    served = [item for item in RESOURCE_TYPES if (item.group, item.version) == (group, version)]
    if not served:
        return None
    resources = []
    for resource_type in served:
        resources.append(_legacy_resource(resource_type))
        for name, spec in resource_type.subresources.items():
            resources.append(_legacy_subresource(resource_type, name, spec))
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def core_versions() -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def group_list() -> dict:
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _aggregated_resource(resource_type: ResourceType) -> dict:
    entry = {
        "resource": resource_type.plural,
        "responseKind": {"group": resource_type.group, "version": resource_type.version,
                         "kind": resource_type.kind},
        "scope": "Namespaced" if resource_type.namespaced else "Cluster",
        "singularResource": resource_type.singular,
        "verbs": list(resource_type.verbs),
    }
    if resource_type.short_names:
        entry["shortNames"] = list(resource_type.short_names)
    subresources = []
    for name, spec in resource_type.subresources.items():
        kind = {"group": spec.get("group", resource_type.group),
                "version": spec.get("version", resource_type.version), "kind": spec["kind"]}
        subresources.append({"subresource": name, "responseKind": kind, "verbs": list(spec["verbs"])})
    if subresources:
        entry["subresources"] = subresources
    return entry


def aggregated_discovery(core: bool) -> dict:
    """Return the ``APIGroupDiscoveryList`` for ``/api`` (``core``) or for ``/apis``."""
    items = []
    for group, versions in group_versions().items():
        if bool(group) == core:
            continue
        version_entries = []
        for version in versions:
            served = [item for item in RESOURCE_TYPES if (item.group, item.version) == (group, version)]
            version_entries.append({"version": version, "freshness": "Current",
                                    "resources": [_aggregated_resource(item) for item in served]})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": version_entries})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}
