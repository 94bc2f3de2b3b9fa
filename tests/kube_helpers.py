"""A prod and a sandbox that run in two stand-in Kubernetes clusters, for the kubectl transport's tests.

Each cluster has a PostgreSQL StatefulSet whose ``kubectl exec`` reaches the session's real
PostgreSQL server, and a Dolibarr Deployment whose exec reaches a local documents folder. The
sandbox's Dolibarr is deployed by a self-healing ArgoCD Application.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from checkpoint.lab.pgcluster import PostgresCluster
from checkpoint.lifecycle import restore_default_signals
from tests.lifecycle_helpers import SCRIPT, DatabaseState, documents_snapshot
from tests.support.kube_api import Cluster, ExecProfile, KubeApiServer, ManagedWorkload

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
NAMESPACE = "dolibarr"
ARGOCD_NAMESPACE = "argocd"
APPLICATION = "dolibarr-sandbox"
APP_REPLICAS = 2
ANNOTATION_PREFIX = "sandbox-lifecycle.checkpoint/"
LOCK_NAME = "sandbox-lifecycle"


@dataclass
class KubeSetup:
    """The two clusters, the databases behind them, and the script's environment."""

    server: KubeApiServer
    prod: Cluster
    sandbox: Cluster
    pg: PostgresCluster
    prod_database: str
    sandbox_database: str
    prod_role: str
    sandbox_role: str
    prod_documents: Path
    sandbox_documents: Path
    home: Path
    kubeconfig: Path
    work_parent: Path

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "TMPDIR": str(self.work_parent),
            "LIFECYCLE_TRANSPORT": "kubectl",
            "LIFECYCLE_KUBE_WAIT_SECONDS": "60",
            "ARGOCD_APPLICATION": APPLICATION,
        }
        for side, database, role, documents in (
            ("PROD", self.prod_database, self.prod_role, self.prod_documents),
            ("SANDBOX", self.sandbox_database, self.sandbox_role, self.sandbox_documents),
        ):
            env.update({
                f"{side}_KUBE_CONTEXT": side.lower(),
                f"{side}_NAMESPACE": NAMESPACE,
                f"{side}_DB_WORKLOAD": "statefulset/postgres",
                f"{side}_DB_CONTAINER": "postgres",
                f"{side}_DB_NAME": database,
                f"{side}_DB_ROLE": role,
                f"{side}_APP_WORKLOAD": "deployment/dolibarr",
                f"{side}_DOCUMENTS_PATH": str(documents),
            })
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def run(self, *arguments: str, **overrides: str | None) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *arguments], env=self.env(**overrides),
                              capture_output=True, text=True, timeout=600)

    def start(self, *arguments: str, **overrides: str | None) -> subprocess.Popen:
        """Start the script in its own process group, so a test can signal the group."""
        return subprocess.Popen(["bash", str(SCRIPT), *arguments], env=self.env(**overrides),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=restore_default_signals)

    def kubectl(self, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, *arguments], input=stdin, env=self.env(), capture_output=True,
                              text=True, timeout=120, check=True)

    # -- reading back ------------------------------------------------------------

    def application(self) -> dict:
        return self.sandbox.get("applications", ARGOCD_NAMESPACE, APPLICATION)

    def deployment(self) -> dict:
        return self.sandbox.get("deployments", NAMESPACE, "dolibarr")

    def recorded_annotations(self, obj: dict) -> dict:
        annotations = obj["metadata"].get("annotations") or {}
        return {key: value for key, value in annotations.items() if key.startswith(ANNOTATION_PREFIX)}

    def lock(self) -> dict | None:
        return self.sandbox.find("leases", NAMESPACE, LOCK_NAME)

    def prod_state(self) -> DatabaseState:
        return DatabaseState.read(self.pg, self.prod_database)

    def sandbox_state(self) -> DatabaseState:
        return DatabaseState.read(self.pg, self.sandbox_database)

    def documents_equal(self) -> bool:
        return documents_snapshot(self.sandbox_documents) == documents_snapshot(self.prod_documents)


def database_profile(pg: PostgresCluster, **extra_env: str) -> ExecProfile:
    """Return the exec profile of a database pod: psql and pg_dump reach the real server."""
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGPASSFILE": str(pg.pgpass_file), **extra_env}
    return ExecProfile(env=env)


def add_side(cluster: Cluster, pg: PostgresCluster, app_replicas: int) -> None:
    cluster.add_statefulset(NAMESPACE, "postgres", replicas=1, labels={"app": "postgres"},
                            containers=("postgres",), exec_profile=database_profile(pg))
    cluster.add_deployment(NAMESPACE, "dolibarr", replicas=app_replicas, labels={"app": "dolibarr"},
                           containers=("dolibarr",))


def add_application(cluster: Cluster, applicationset: str | None = None) -> None:
    cluster.add_application(ARGOCD_NAMESPACE, APPLICATION, destination_namespace=NAMESPACE,
                            managed=[ManagedWorkload("Deployment", "dolibarr", APP_REPLICAS)],
                            applicationset=applicationset)


def write_lease(setup: KubeSetup, holder: str, acquired: str) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": LOCK_NAME, "namespace": NAMESPACE},
             "spec": {"holderIdentity": holder, "acquireTime": acquired, "leaseDurationSeconds": 3600}}
    setup.kubectl("--context", "sandbox", "create", "-f", "-", stdin=json.dumps(lease))
