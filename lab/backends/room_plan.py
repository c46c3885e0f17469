"""Pure sizing and isolation for a workshop room: port blocks, caps, policies, quotas, resources.

Why port blocks rather than hostnames through one ingress: the lab's parts put their own URLs in
tokens and call each other at those URLs (contracts §0), and every URL is ``http://host:port``;
a port per learner and part keeps that shape with no ingress controller, TLS or DNS to set up in
a workshop room. Learner N's parts use ``ROOM_PORT_BASE + N*PORT_STRIDE + offset``; the room's
Keycloak uses ``ROOM_PORT_BASE``. No block overlaps the single-lab ports (4443, 8443, 14443,
14442, 8101, 9090), so a room and a single lab can run on one machine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from lab.backends import kind_plan as plan
from lab.backends.base import BackendError
from lab.config import REALM, Settings

#: First port of the room (the room's Keycloak); learner N's block starts at BASE + N*STRIDE.
ROOM_PORT_BASE = 20000
PORT_STRIDE = 10
#: Offsets of each learner part inside the learner's block (the IdP is shared, see above).
PORT_OFFSETS = {"zms": 0, "zts": 1, "docapi_protected": 2, "docapi_unprotected": 3, "mcp": 4}

#: The room cluster's API server port (kind ``apiServerPort``) on the listen address: learners'
#: ``lab`` reaches it with their namespaced token (provider restarts, progress for the status).
ROOM_API_PORT = 19443

#: In each learner namespace: what the learner's own credentials may touch (see learner_access).
LEARNER_ACCOUNT = "lab-learner"
LEARNER_TOKEN_SECRET = "lab-learner-token"
PROGRESS_CONFIGMAP = "lab-progress"

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


def learner_realm(number: int) -> str:
    """Learner ``number``'s own realm in the room's Keycloak: their own issuer and keys."""
    return f"{REALM}-{number:02d}"


def learner_settings(settings: Settings, number: int) -> Settings:
    """The Settings learner ``number``'s parts and ``lab`` use (issuers follow their ports)."""
    return replace(settings, ports=learner_ports(settings, number), realm=learner_realm(number))


def check_listen_address(host: str) -> str:
    """The room's listen address: one concrete address learners' laptops can reach.

    Every issuer and resource URL is built from it, and tokens carry them (``iss``, ``aud``), so
    an address that names no interface (0.0.0.0, ::) would put an unreachable URL in every token.
    """
    name = host.strip("[]")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if not name or any(c in name for c in "/:@ "):
            raise BackendError(
                f"{host!r} is not a listen address",
                "pass --listen with this machine's LAN address, e.g. --listen 192.168.1.20",
            ) from None
        return name  # a host name that learners' machines resolve to this one
    if address.is_unspecified:
        raise BackendError(
            f"--listen {host} would put http://{host}:... in every token, which no laptop reaches",
            "pass the one address learners reach, e.g. this machine's LAN address "
            "(`ip -4 addr` / `ipconfig getifaddr en0`)",
        )
    return str(address)


def room_kind_config(listen: str, cluster: str = plan.CLUSTER_NAME) -> dict[str, Any]:
    """The room's kind cluster: no host port mappings (every learner's ports come from
    ``kubectl port-forward`` on the listen address) and the API server on the listen address,
    so learners' namespaced tokens reach it. kind adds that address to the server certificate."""
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": cluster,
        "networking": {"apiServerAddress": listen, "apiServerPort": ROOM_API_PORT},
        "nodes": [{"role": "control-plane"}],
    }


def learner_access(namespace: str) -> list[dict[str, Any]]:
    """The learner's own credentials, limited to their namespace, and their progress ConfigMap.

    The learner's ``lab`` needs the API server for two things only: restarting their PDP after a
    providers change (step 10, as one restarts Athenz's ZTS) and recording the last step it
    verified (``lab room status``). The token is a service-account token Secret; the instructor
    reads it into the learner's join bundle.
    """
    meta = {"namespace": namespace, "labels": dict(plan.LAB_LABEL)}
    parts = sorted(plan.DEPLOYMENT_PARTS)
    rules = [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["lab-pdp-providers", PROGRESS_CONFIGMAP],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": parts,
            "verbs": ["patch"],
        },
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": LEARNER_ACCOUNT, **meta},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": LEARNER_ACCOUNT, **meta},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": LEARNER_ACCOUNT, **meta},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": LEARNER_ACCOUNT,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": LEARNER_ACCOUNT, "namespace": namespace}
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": LEARNER_TOKEN_SECRET,
                "annotations": {"kubernetes.io/service-account.name": LEARNER_ACCOUNT},
                **meta,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PROGRESS_CONFIGMAP, **meta},
            "data": {},
        },
    ]


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
