"""The Kubernetes API stand-in, driven by the real kubectl client."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from checkpoint.lab.pgcluster import wait_for
from tests.support.kube_api import Cluster, ExecProfile, KubeApiServer, ManagedWorkload

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
KUBECTL_TIMEOUT_SECONDS = 120
WAIT_SECONDS = 30
NAMESPACE = "dolibarr"
ARGOCD_NAMESPACE = "argocd"

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


@dataclass
class Kube:
    server: KubeApiServer
    cluster: Cluster
    env: dict[str, str]

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, env=self.env,
                                timeout=KUBECTL_TIMEOUT_SECONDS)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture
def kube(tmp_path):
    server = KubeApiServer()
    server.start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", ["sandbox"])
    # kubectl keeps its discovery cache under HOME, and that cache must not outlive this server's port.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    yield Kube(server, server.cluster, env)
    server.stop()


@pytest.fixture
def dolibarr_app(kube):
    """A Deployment ``dolibarr`` with one replica, deployed by a self-healing Application."""
    kube.cluster.add_deployment(NAMESPACE, "dolibarr", replicas=1, labels={"app": "dolibarr"})
    kube.cluster.add_application(ARGOCD_NAMESPACE, "dolibarr-sandbox", destination_namespace=NAMESPACE,
                                 managed=[ManagedWorkload("Deployment", "dolibarr", 1)])
    return kube


def deployment_replicas(kube: Kube) -> int:
    return kube.cluster.get("deployments", NAMESPACE, "dolibarr")["spec"]["replicas"]


# -- reads ---------------------------------------------------------------------------


def test_get_pods_filters_by_label(kube):
    kube.cluster.add_deployment(NAMESPACE, "dolibarr", replicas=2, labels={"app": "dolibarr"})
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1, labels={"app": "db"})

    pods = kube.json("get", "pods", "-n", NAMESPACE, "-l", "app=dolibarr")

    assert len(pods["items"]) == 2
    assert all(pod["metadata"]["labels"]["app"] == "dolibarr" for pod in pods["items"])
    assert all(pod["status"]["phase"] == "Running" for pod in pods["items"])


def test_get_pods_filters_by_phase(kube):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1)

    running = kube.json("get", "pods", "-n", NAMESPACE, "--field-selector", "status.phase=Running")
    pending = kube.json("get", "pods", "-n", NAMESPACE, "--field-selector", "status.phase=Pending")

    assert [pod["metadata"]["name"] for pod in running["items"]] == ["db-0"]
    assert pending["items"] == []


def test_unknown_path_returns_status_404(kube):
    response = requests.get(kube.server.url + "/apis/example.com/v1/widgets", timeout=10)

    assert response.status_code == 404
    assert response.json()["kind"] == "Status"
    assert response.json()["reason"] == "NotFound"


def test_missing_object_reports_not_found(kube):
    # On NotFound kubectl reads the namespace, to report a missing namespace instead.
    kube.cluster.add_namespace(NAMESPACE)

    result = kube.run("get", "deployment", "nope", "-n", NAMESPACE, check=False)

    assert result.returncode == 1
    assert 'deployments.apps "nope" not found' in result.stderr.decode()


def test_contexts_reach_separate_clusters(kube, tmp_path):
    prod = kube.server.add_cluster("prod")
    prod.add_deployment(NAMESPACE, "dolibarr", replicas=3)
    kube.cluster.add_deployment(NAMESPACE, "dolibarr", replicas=1)
    kubeconfig = kube.server.write_kubeconfig(tmp_path / "two-contexts", ["sandbox", "prod"])
    env = {**kube.env, "KUBECONFIG": str(kubeconfig)}
    both = Kube(kube.server, kube.cluster, env)

    sandbox_replicas = both.json("--context", "sandbox", "get", "deploy/dolibarr", "-n", NAMESPACE)["spec"]["replicas"]
    prod_replicas = both.json("--context", "prod", "get", "deploy/dolibarr", "-n", NAMESPACE)["spec"]["replicas"]

    assert sandbox_replicas == 1
    assert prod_replicas == 3


# -- exec ----------------------------------------------------------------------------


def test_exec_round_trips_20_mb_byte_exact(kube):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1, containers=("postgres",))
    payload = os.urandom(20 * 1024 * 1024)

    result = kube.run("exec", "-i", "-n", NAMESPACE, "db-0", "-c", "postgres", "--", "cat", stdin=payload)

    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("exit_code", [0, 3])
def test_exec_propagates_exit_code(kube, exit_code):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1)

    result = kube.run("exec", "-n", NAMESPACE, "db-0", "--", "sh", "-c", f"exit {exit_code}", check=False)

    assert result.returncode == exit_code


def test_exec_keeps_stderr_apart(kube):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1)

    result = kube.run("exec", "-n", NAMESPACE, "db-0", "--", "sh", "-c", "echo to-out; echo to-err >&2")

    assert result.stdout == b"to-out\n"
    assert b"to-err" in result.stderr
    assert b"to-err" not in result.stdout


def test_exec_uses_pod_environment_and_directory(kube, tmp_path):
    profile = ExecProfile(env={"DOCUMENTS": "/var/www/documents"}, cwd=tmp_path)
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1, exec_profile=profile)

    result = kube.run("exec", "-n", NAMESPACE, "db-0", "--", "sh", "-c", 'echo "$DOCUMENTS"; pwd')

    assert result.stdout.decode().splitlines() == ["/var/www/documents", str(tmp_path)]


def test_exec_truncation_fault_exits_zero_with_fewer_bytes(kube):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1)
    kube.cluster.exec_profile(NAMESPACE, "db").truncate_stdout_after_bytes = 100_000

    result = kube.run("exec", "-i", "-n", NAMESPACE, "db-0", "--", "cat", stdin=os.urandom(1_000_000))

    assert result.returncode == 0
    assert len(result.stdout) == 100_000
    assert kube.cluster.exec_calls[-1].truncated


def test_exec_failure_fault_fails_kubectl(kube):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1)
    kube.cluster.exec_profile(NAMESPACE, "db-0").fail_exec = True

    result = kube.run("exec", "-n", NAMESPACE, "db-0", "--", "true", check=False)

    assert result.returncode != 0
    assert b"Internal error occurred" in result.stderr


def test_exec_calls_are_recorded(kube):
    seen = []
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1, exec_profile=ExecProfile(on_exec=seen.append))

    kube.run("exec", "-n", NAMESPACE, "db-0", "--", "echo", "hello")

    assert [call.command for call in seen] == [["echo", "hello"]]
    assert kube.cluster.exec_calls[-1].exit_code == 0
    assert kube.cluster.exec_calls[-1].stdout_bytes == len(b"hello\n")


def test_exec_runs_psql_against_real_postgres(kube, pg_cluster):
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(pg_cluster.port), "PGUSER": "postgres",
           "PGDATABASE": "postgres", "PGPASSFILE": str(pg_cluster.pgpass_file)}
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=1, exec_profile=ExecProfile(env=env))

    result = kube.run("exec", "-i", "-n", NAMESPACE, "db-0", "--", "psql", "-X", "-At", "-c", "select 1")

    assert result.stdout == b"1\n"


# -- workloads -----------------------------------------------------------------------


def test_scale_to_zero_removes_pods(kube):
    kube.cluster.add_deployment(NAMESPACE, "dolibarr", replicas=2, labels={"app": "dolibarr"})

    kube.run("scale", "deploy/dolibarr", "-n", NAMESPACE, "--replicas=0")

    wait_for(lambda: kube.json("get", "pods", "-n", NAMESPACE, "-l", "app=dolibarr")["items"] == [],
             WAIT_SECONDS, "the dolibarr pods to disappear")
    status = kube.json("get", "deploy/dolibarr", "-n", NAMESPACE)["status"]
    assert "readyReplicas" not in status


def test_scale_up_completes_rollout(kube):
    kube.cluster.add_statefulset(NAMESPACE, "db", replicas=0)

    kube.run("scale", "statefulset/db", "-n", NAMESPACE, "--replicas=2")
    rollout = kube.run("rollout", "status", "statefulset/db", "-n", NAMESPACE, "--timeout=60s")

    assert rollout.returncode == 0
    assert kube.json("get", "statefulset/db", "-n", NAMESPACE)["status"]["readyReplicas"] == 2


def test_deployment_rollout_status_waits_for_new_pods(kube):
    kube.cluster.add_deployment(NAMESPACE, "dolibarr", replicas=1)

    kube.run("scale", "deploy/dolibarr", "-n", NAMESPACE, "--replicas=3")
    rollout = kube.run("rollout", "status", "deploy/dolibarr", "-n", NAMESPACE, "--timeout=60s")

    assert b"successfully rolled out" in rollout.stdout
    assert kube.json("get", "deploy/dolibarr", "-n", NAMESPACE)["status"]["availableReplicas"] == 3


# -- ArgoCD --------------------------------------------------------------------------


def test_patch_application_changes_self_heal_and_annotations(dolibarr_app):
    patch = {"metadata": {"annotations": {"sandbox-refresh/paused-by": "test"}},
             "spec": {"syncPolicy": {"automated": {"selfHeal": False}}}}

    dolibarr_app.run("patch", "application", "dolibarr-sandbox", "-n", ARGOCD_NAMESPACE, "--type", "merge",
                     "-p", json.dumps(patch))

    application = dolibarr_app.cluster.get("applications", ARGOCD_NAMESPACE, "dolibarr-sandbox")
    assert application["spec"]["syncPolicy"]["automated"] == {"selfHeal": False, "prune": True}
    assert application["metadata"]["annotations"]["sandbox-refresh/paused-by"] == "test"


def test_patch_application_accepts_json_patch(dolibarr_app):
    patch = [{"op": "replace", "path": "/spec/syncPolicy/automated/selfHeal", "value": False}]

    dolibarr_app.run("patch", "application", "dolibarr-sandbox", "-n", ARGOCD_NAMESPACE, "--type", "json",
                     "-p", json.dumps(patch))

    application = dolibarr_app.cluster.get("applications", ARGOCD_NAMESPACE, "dolibarr-sandbox")
    assert application["spec"]["syncPolicy"]["automated"]["selfHeal"] is False


def test_patch_application_rejects_strategic_merge(dolibarr_app):
    result = dolibarr_app.run("patch", "application", "dolibarr-sandbox", "-n", ARGOCD_NAMESPACE,
                              "-p", '{"spec":{}}', check=False)

    assert result.returncode == 1
    assert b"application/strategic-merge-patch+json is not supported" in result.stderr


def test_self_heal_reverts_replicas_while_on(dolibarr_app):
    dolibarr_app.run("scale", "deploy/dolibarr", "-n", NAMESPACE, "--replicas=0")

    wait_for(lambda: dolibarr_app.cluster.self_heal_count == 1, WAIT_SECONDS, "ArgoCD self-heal")
    assert deployment_replicas(dolibarr_app) == 1


def test_self_heal_leaves_replicas_while_off(dolibarr_app):
    patch = {"spec": {"syncPolicy": {"automated": {"selfHeal": False}}}}
    dolibarr_app.run("patch", "app", "dolibarr-sandbox", "-n", ARGOCD_NAMESPACE, "--type", "merge",
                     "-p", json.dumps(patch))

    dolibarr_app.run("scale", "deploy/dolibarr", "-n", NAMESPACE, "--replicas=0")
    timing = dolibarr_app.cluster.timing
    dolibarr_app.cluster.wait_for_reconcile_passes(int(timing.self_heal / timing.tick) + 5)

    assert deployment_replicas(dolibarr_app) == 0
    assert dolibarr_app.cluster.self_heal_count == 0
    sync = dolibarr_app.json("get", "app", "dolibarr-sandbox", "-n", ARGOCD_NAMESPACE)["status"]["sync"]
    assert sync["status"] == "OutOfSync"


def _owned_application(kube: Kube, applications_sync: str | None) -> None:
    template = {"project": "default",
                "destination": {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE},
                "syncPolicy": {"automated": {"selfHeal": True, "prune": True}}}
    kube.cluster.add_deployment(NAMESPACE, "dolibarr", replicas=1)
    kube.cluster.add_applicationset(ARGOCD_NAMESPACE, "sandboxes", template_spec=template,
                                    applications_sync=applications_sync)
    kube.cluster.add_application(ARGOCD_NAMESPACE, "dolibarr-sandbox", destination_namespace=NAMESPACE,
                                 managed=[ManagedWorkload("Deployment", "dolibarr", 1)], applicationset="sandboxes")
    kube.run("patch", "app", "dolibarr-sandbox", "-n", ARGOCD_NAMESPACE, "--type", "merge",
             "-p", '{"spec":{"syncPolicy":{"automated":{"selfHeal":false}}}}')


def _self_heal(kube: Kube) -> bool:
    application = kube.cluster.get("applications", ARGOCD_NAMESPACE, "dolibarr-sandbox")
    return application["spec"]["syncPolicy"]["automated"]["selfHeal"]


def test_applicationset_reverts_sync_policy_patch(kube):
    _owned_application(kube, applications_sync=None)

    wait_for(lambda: _self_heal(kube), WAIT_SECONDS, "the ApplicationSet to restore selfHeal")
    assert kube.cluster.applicationset_revert_count == 1


def test_applicationset_create_only_keeps_sync_policy_patch(kube):
    _owned_application(kube, applications_sync="create-only")
    timing = kube.cluster.timing

    kube.cluster.wait_for_reconcile_passes(int(timing.applicationset / timing.tick) + 5)

    assert _self_heal(kube) is False
    assert kube.cluster.applicationset_revert_count == 0


# -- leases --------------------------------------------------------------------------


def _lease_manifest(holder: str) -> bytes:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "sandbox-refresh", "namespace": NAMESPACE},
             "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3600}}
    return json.dumps(lease).encode()


def test_lease_created_twice_fails_with_already_exists(kube):
    kube.cluster.add_namespace(NAMESPACE)
    kube.run("create", "-f", "-", stdin=_lease_manifest("first"))

    second = kube.run("create", "-f", "-", stdin=_lease_manifest("second"), check=False)

    assert second.returncode == 1
    assert b"AlreadyExists" in second.stderr
    assert kube.cluster.get("leases", NAMESPACE, "sandbox-refresh")["spec"]["holderIdentity"] == "first"


def test_lease_patch_with_stale_resource_version_conflicts(kube):
    kube.cluster.add_namespace(NAMESPACE)
    kube.run("create", "-f", "-", stdin=_lease_manifest("first"))
    stale = kube.cluster.get("leases", NAMESPACE, "sandbox-refresh")["metadata"]["resourceVersion"]
    kube.run("patch", "lease", "sandbox-refresh", "-n", NAMESPACE, "--type", "merge",
             "-p", '{"spec":{"holderIdentity":"renewed"}}')

    patch = {"metadata": {"resourceVersion": stale}, "spec": {"holderIdentity": "late"}}
    result = kube.run("patch", "lease", "sandbox-refresh", "-n", NAMESPACE, "--type", "merge",
                      "-p", json.dumps(patch), check=False)

    assert result.returncode == 1
    assert b"Conflict" in result.stderr
    assert kube.cluster.get("leases", NAMESPACE, "sandbox-refresh")["spec"]["holderIdentity"] == "renewed"


def test_lease_delete_removes_it(kube):
    kube.cluster.add_namespace(NAMESPACE)
    kube.run("create", "-f", "-", stdin=_lease_manifest("first"))

    kube.run("delete", "lease", "sandbox-refresh", "-n", NAMESPACE)

    assert kube.cluster.find("leases", NAMESPACE, "sandbox-refresh") is None
