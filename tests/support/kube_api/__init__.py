"""A stand-in Kubernetes API server, with ArgoCD Applications, for tests that run the real kubectl.

It speaks plain HTTP on loopback and implements only what ``ops/sandbox/sandbox-lifecycle.sh``
uses: discovery, pods and ``pods/exec`` over WebSocket, Deployments and StatefulSets with the
``scale`` subresource, ArgoCD ``applications`` and ``applicationsets``, and Leases. Commands run
through ``kubectl exec`` execute locally, with the environment configured for the pod.
"""

from tests.support.kube_api.cluster import Cluster, ExecCall, ExecProfile, ManagedWorkload
from tests.support.kube_api.server import KubeApiServer

__all__ = ["Cluster", "ExecCall", "ExecProfile", "KubeApiServer", "ManagedWorkload"]
