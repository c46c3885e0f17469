"""Pure sizing and isolation for a workshop room: port blocks, caps, policies, quotas, resources.

Why port blocks rather than hostnames through one ingress: the lab's parts put their own URLs in
tokens and call each other at those URLs (contracts §0), and every URL is ``http://host:port``;
a port per learner and part keeps that shape with no ingress controller, TLS or DNS to set up in
a workshop room. Learner N's parts use ``ROOM_PORT_BASE + N*PORT_STRIDE + offset``; the room's
Keycloak uses ``ROOM_PORT_BASE``. No block overlaps the single-lab ports (4443, 8443, 14443,
14442, 8101, 9090), so a room and a single lab can run on one machine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lab.backends import kind_plan as plan
from lab.config import Settings

#: First port of the room (the room's Keycloak); learner N's block starts at BASE + N*STRIDE.
ROOM_PORT_BASE = 20000
PORT_STRIDE = 10
#: Offsets of each learner part inside the learner's block (the IdP is shared, see above).
PORT_OFFSETS = {"zms": 0, "zts": 1, "docapi_protected": 2, "docapi_unprotected": 3, "mcp": 4}

#: kubelet's default ``maxPods`` on the single kind node.
NODE_POD_LIMIT = 110
#: Pods that are not a learner's on that node: kind's control plane and add-ons (etcd,
#: apiserver, controller-manager, scheduler, kube-proxy, kindnet, two CoreDNS, local-path
#: provisioner = 9) plus the room's Keycloak, plus one for a rolling restart's surge.
RESERVED_PODS = 11
#: PDP, document API and MCP server (the PDP restarts with Recreate, so no extra pod then).
PODS_PER_LEARNER = 3
#: The room's learner cap on one node: (110 - 11) // 3 = 33.
MAX_LEARNERS = (NODE_POD_LIMIT - RESERVED_PODS) // PODS_PER_LEARNER

#: Requests/limits of each lab part's container (one Python process, small in-memory state).
PART_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "96Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
#: The room's Keycloak (a JVM in dev mode serving every learner).
KEYCLOAK_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}


def learner_ports(settings: Settings, number: int) -> dict[str, int]:
    """Learner ``number``'s ports: their own block for their parts, the room's IdP port."""
    start = ROOM_PORT_BASE + number * PORT_STRIDE
    ports = dict(settings.ports)
    ports["idp"] = ROOM_PORT_BASE
    for part, offset in PORT_OFFSETS.items():
        ports[part] = start + offset
    return ports


def learner_settings(settings: Settings, number: int) -> Settings:
    """The Settings learner ``number``'s parts and ``lab`` use (issuers follow their ports)."""
    return replace(settings, ports=learner_ports(settings, number))


def set_resources(docs: list[dict[str, Any]], resources: dict[str, dict[str, str]]) -> None:
    """Requests and limits on every container that has none (a ResourceQuota demands them)."""
    for doc in docs:
        for container in plan._containers(doc):
            container.setdefault("resources", {k: dict(v) for k, v in resources.items()})


def isolation(namespace: str, room_namespace: str) -> list[dict[str, Any]]:
    """NetworkPolicy, ResourceQuota and LimitRange of one learner namespace.

    Pods may talk to their own namespace's pods, to the room's Keycloak and to cluster DNS;
    nothing else reaches them or is reached (kind's default CNI, kindnet, enforces this from
    kind v0.24). ``kubectl port-forward`` enters through the kubelet, so learners still connect.
    """
    labels = dict(plan.LAB_LABEL)
    meta = {"namespace": namespace, "labels": labels}
    own: dict[str, Any] = {"podSelector": {}}
    room = {"namespaceSelector": _named(room_namespace)}
    dns = {
        "to": [
            {
                "namespaceSelector": _named("kube-system"),
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "lab-learner-isolation", **meta},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [own]}],
            "egress": [{"to": [own]}, {"to": [room]}, dns],
        },
    }
    pods = PODS_PER_LEARNER + 1
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "lab-learner-quota", **meta},
        "spec": {
            "hard": {
                "pods": str(pods),
                "requests.cpu": f"{50 * pods}m",
                "requests.memory": f"{96 * pods}Mi",
                "limits.cpu": f"{500 * pods}m",
                "limits.memory": f"{256 * pods}Mi",
                "persistentvolumeclaims": "1",
                "services": "4",
            }
        },
    }
    limits = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "lab-learner-limits", **meta},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": dict(PART_RESOURCES["requests"]),
                    "default": dict(PART_RESOURCES["limits"]),
                    "max": dict(PART_RESOURCES["limits"]),
                }
            ]
        },
    }
    return [policy, quota, limits]


def _named(namespace: str) -> dict[str, Any]:
    """Selects one namespace by the label Kubernetes sets on every namespace (1.21+)."""
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
