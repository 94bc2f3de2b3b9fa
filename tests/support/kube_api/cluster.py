"""One stand-in cluster: its objects, the exec environment of its pods, and the Python API tests use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kube_api import objects
from tests.support.kube_api.controllers import WorkloadController
from tests.support.kube_api.store import Store

WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


@dataclass
class ExecCall:
    """One ``pods/exec`` request, recorded when it starts and completed when the command ends."""

    namespace: str
    pod: str
    container: str
    command: list[str]
    exit_code: int | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    truncated: bool = False


@dataclass
class ExecProfile:
    """How ``kubectl exec`` runs in a pod: the local environment and working directory, and faults.

    ``truncate_stdout_after_bytes`` forwards only that many bytes of stdout, then reports success
    and ends the stream, as a broken exec connection does. ``fail_exec`` makes every exec fail
    before the command starts. ``on_exec`` is called with each ExecCall before its command runs.
    """

    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    truncate_stdout_after_bytes: int | None = None
    fail_exec: bool = False
    on_exec: Callable[[ExecCall], None] | None = None


@dataclass(frozen=True)
class ManagedWorkload:
    """A workload that an Application deploys, with the replica count its Git source declares."""

    kind: str
    name: str
    replicas: int
    namespace: str | None = None


@dataclass
class Timing:
    """Delays of the simulated controllers, in seconds."""

    tick: float = 0.02
    pod_start: float = 0.3
    pod_stop: float = 0.3
    self_heal: float = 0.3
    applicationset: float = 0.3


class Cluster:
    """The state of one stand-in cluster, which tests set up and read back through this class."""

    def __init__(self, name: str, timing: Timing | None = None):
        self.name = name
        self.timing = timing or Timing()
        self.store = Store()
        self.exec_calls: list[ExecCall] = []
        self.self_heal_count = 0
        self.applicationset_revert_count = 0
        self._profiles: dict[tuple[str, str], ExecProfile] = {}
        self._pod_workloads: dict[tuple[str, str], str] = {}
        # (namespace, pod) -> (workload plural, workload name), for the pods the controllers created.
        self.pod_owners: dict[tuple[str, str], tuple[str, str]] = {}
        self._desired: dict[tuple[str, str], list[ManagedWorkload]] = {}
        self._lock = threading.Lock()
        self._passes = threading.Condition()
        self.reconcile_passes = 0
        self.workloads = WorkloadController(self)

    # -- objects -----------------------------------------------------------------

    def add_namespace(self, name: str) -> dict:
        found = self.store.find("namespaces", None, name)
        return found or self.store.create("namespaces", objects.namespace_object(name))

    def add_pod(self, namespace: str, name: str, *, labels: dict | None = None,
                containers: Iterable[str] = ("main",), exec_profile: ExecProfile | None = None) -> dict:
        """Create a Running pod with no owner."""
        self.add_namespace(namespace)
        if exec_profile is not None:
            self._profiles[(namespace, name)] = exec_profile
        pod = objects.pod_object(namespace, name, labels or {}, objects.containers_spec(containers))
        pod["status"] = objects.pod_running_status(pod)
        return self.store.create("pods", pod)

    def add_deployment(self, namespace: str, name: str, **options) -> dict:
        """Create a Deployment whose pods already run. The options are those of ``add_statefulset``."""
        return self._add_workload("Deployment", namespace, name, **options)

    def add_statefulset(self, namespace: str, name: str, *, replicas: int = 1, labels: dict | None = None,
                        containers: Iterable[str] = ("main",), exec_profile: ExecProfile | None = None) -> dict:
        """Create a StatefulSet whose pods ``name-0`` … already run, all sharing ``exec_profile``."""
        return self._add_workload("StatefulSet", namespace, name, replicas=replicas, labels=labels,
                                  containers=containers, exec_profile=exec_profile)

    def _add_workload(self, kind: str, namespace: str, name: str, *, replicas: int = 1,
                      labels: dict | None = None, containers: Iterable[str] = ("main",),
                      exec_profile: ExecProfile | None = None) -> dict:
        self.add_namespace(namespace)
        self._profiles[(namespace, name)] = exec_profile or ExecProfile()
        body = objects.workload_object(kind, namespace, name, replicas, labels or {"app": name},
                                       objects.containers_spec(containers))
        self.store.create(WORKLOAD_PLURALS[kind], body)
        self.workloads.start_pods_now(WORKLOAD_PLURALS[kind], namespace, name)
        return self.store.get(WORKLOAD_PLURALS[kind], namespace, name)

    def add_applicationset(self, namespace: str, name: str, *, template_spec: dict,
                           applications_sync: str | None = None,
                           ignore_differences: list[dict] | None = None) -> dict:
        """Create an ApplicationSet whose ``spec.syncPolicy.applicationsSync`` is ``applications_sync``."""
        self.add_namespace(namespace)
        body = objects.applicationset_object(namespace, name, template_spec, applications_sync,
                                             ignore_differences)
        return self.store.create("applicationsets", body)

    def add_application(self, namespace: str, name: str, *, managed: Iterable[ManagedWorkload],
                        destination_namespace: str, self_heal: bool = True, prune: bool = True,
                        annotations: dict | None = None, applicationset: str | None = None) -> dict:
        """Create an Application that deploys ``managed``, from the template of ``applicationset`` when given."""
        self.add_namespace(namespace)
        self._desired[(namespace, name)] = [
            workload if workload.namespace else ManagedWorkload(workload.kind, workload.name, workload.replicas,
                                                                destination_namespace)
            for workload in managed
        ]
        owner = None
        spec = objects.application_spec(destination_namespace, self_heal, prune)
        if applicationset:
            appset = self.store.get("applicationsets", namespace, applicationset)
            owner = objects.owner_reference("ApplicationSet", "argoproj.io/v1alpha1", appset)
            spec = appset["spec"]["template"]["spec"]
        body = objects.application_object(namespace, name, spec, annotations, owner)
        return self.store.create("applications", body)

    def set_desired_replicas(self, namespace: str, application: str, workload: str, replicas: int) -> None:
        """Change the replica count that the Application's Git source declares for ``workload``."""
        with self._lock:
            self._desired[(namespace, application)] = [
                ManagedWorkload(item.kind, item.name, replicas, item.namespace) if item.name == workload else item
                for item in self._desired[(namespace, application)]
            ]

    def desired_workloads(self, namespace: str, application: str) -> list[ManagedWorkload]:
        with self._lock:
            return list(self._desired.get((namespace, application), []))

    # -- reading back ------------------------------------------------------------

    def get(self, plural: str, namespace: str | None, name: str) -> dict:
        return self.store.get(plural, namespace, name)

    def find(self, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.store.find(plural, namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict]:
        return self.store.list(plural, namespace)[0]

    def pod_names(self, namespace: str) -> list[str]:
        return [pod["metadata"]["name"] for pod in self.list("pods", namespace)]

    # -- controllers -------------------------------------------------------------

    def count_reconcile_pass(self) -> None:
        with self._passes:
            self.reconcile_passes += 1
            self._passes.notify_all()

    def wait_for_reconcile_passes(self, count: int, timeout: float = 30.0) -> None:
        """Block until the controllers have run ``count`` more full passes over the cluster.

        A test uses this to show that something did not happen: after enough passes, a controller
        that was going to act has acted.
        """
        with self._passes:
            target = self.reconcile_passes + count
            if not self._passes.wait_for(lambda: self.reconcile_passes >= target, timeout):
                raise TimeoutError(f"cluster {self.name}: controllers did not run {count} passes in {timeout:.0f} s")

    # -- exec --------------------------------------------------------------------

    def exec_profile(self, namespace: str, name: str) -> ExecProfile:
        """Return the exec profile of a pod or of a workload (shared by its pods), creating an empty one."""
        return self._profiles.setdefault((namespace, name), ExecProfile())

    def profile_for_pod(self, namespace: str, pod: str) -> ExecProfile:
        if (namespace, pod) in self._profiles:
            return self._profiles[(namespace, pod)]
        workload = self._pod_workloads.get((namespace, pod))
        return self._profiles.get((namespace, workload), ExecProfile()) if workload else ExecProfile()

    def remember_pod_workload(self, namespace: str, pod: str, workload: str) -> None:
        self._pod_workloads[(namespace, pod)] = workload

    def record_exec(self, call: ExecCall) -> None:
        with self._lock:
            self.exec_calls.append(call)
