"""The kind backend's plan as pure data: kind config, rendered manifests, docker calls.

Nothing here talks to a daemon or a cluster, so ``--dry-run`` and the offline tests see exactly
what ``lab --backend kind up`` would send. Templates are the plain YAML files in ``manifests/``;
Python sets only namespace, names, image, ports, pod environment and Secret data.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import __version__ as _lab_version
from lab.backends import versions
from lab.config import ADMIN_PRINCIPAL, MCP_PRINCIPAL, REALM, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS_DIR = REPO_ROOT / "manifests"
#: The same file the embedded IdP serves (contracts §5): Keycloak imports it unchanged.
REALM_FILE = REPO_ROOT / "keycloak" / "realm-idjag.json"

CLUSTER_NAME = "idjag-lab"
NAMESPACE = "idjag-lab"
KIND_NETWORK = "kind"
KEYCLOAK_CONTAINER = "idjag-lab-keycloak"
IMAGE_REPOSITORY = "idjag-lab"
FIELD_MANAGER = "idjag-lab"

#: Every object (and container) the lab creates carries this label; down finds them by it.
PART_OF_KEY = "app.kubernetes.io/part-of"
LAB_LABEL = {PART_OF_KEY: "idjag-lab"}

#: Where pods keep state, and where Secret / ConfigMap volumes are mounted (see manifests/).
POD_HOME = "/var/lib/lab"
POD_KEYS_MOUNT = "/etc/lab/keys"
POD_PROVIDERS_MOUNT = "/etc/lab/providers"

#: Kubernetes port name (manifests/) -> settings port key (lab.config.PORTS).
PORT_NAMES: dict[str, str] = {
    "zms": "zms",
    "zts": "zts",
    "docs": "docapi_protected",
    "docs-open": "docapi_unprotected",
    "mcp": "mcp",
}

#: Settings port key -> NodePort in manifests/expose.yaml (kind maps host 127.0.0.1:<port> to it).
NODE_PORTS: dict[str, int] = {
    "zms": 30443,
    "zts": 30843,
    "docapi_protected": 31443,
    "docapi_unprotected": 31442,
    "mcp": 30101,
}

#: Settings port key -> in-cluster Service that answers it (same name in every namespace).
SERVICE_OF_PORT: dict[str, str] = {
    "zms": "lab-pdp",
    "zts": "lab-pdp",
    "docapi_protected": "lab-docapi",
    "docapi_unprotected": "lab-docapi",
    "mcp": "lab-mcpserver",
}

#: Deployment -> the parts (PART_NAMES) it serves; Keycloak serves ``idp``.
DEPLOYMENT_PARTS: dict[str, tuple[str, ...]] = {
    "lab-pdp": ("zms", "zts"),
    "lab-docapi": ("docapi_protected", "docapi_unprotected"),
    "lab-mcpserver": ("mcp",),
}

#: Manifest files applied for one lab namespace, in order.
NAMESPACE_FILES = (
    "namespace.yaml",
    "keys-secret.yaml",
    "providers-configmap.yaml",
    "pdp.yaml",
    "docapi.yaml",
    "mcpserver.yaml",
)
EXPOSE_FILE = "expose.yaml"
PDP_KEY = "pdp-signing"


#: Secret -> key files it carries (copied to the pod's $LAB_HOME/keys by lab.backends.pod).
#: Least privilege: the PDP signs its own tokens and only verifies the admin's assertions, so it
#: gets the admin's public key (Pdp.open trusts ``admin.pub.pem`` when no private key is there);
#: the document API and MCP server only verify admin assertions too.
#: The agent's and the learner's keys never leave the laptop.
def _pair(name: str) -> tuple[str, str]:
    return f"{name}.pem", f"{name}.pub.pem"


_ADMIN_PUB = f"{ADMIN_PRINCIPAL}.pub.pem"
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "lab-pdp-keys": (*_pair(PDP_KEY), _ADMIN_PUB),
    "lab-docapi-keys": (_ADMIN_PUB,),
    "lab-mcpserver-keys": (*_pair(MCP_PRINCIPAL), _ADMIN_PUB),
}

KEYCLOAK_HTTP_PORT = 8080
KEYCLOAK_IMPORT_DIR = "/opt/keycloak/data/import"


# --------------------------------------------------------------------------------------------
# Loading and small helpers


def load_manifest(name: str, directory: Path = MANIFESTS_DIR) -> list[dict[str, Any]]:
    """The YAML documents of one file under ``manifests/`` (empty documents dropped)."""
    with (directory / name).open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def to_yaml(docs: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False, width=10**6)


def image_tag(root: Path = REPO_ROOT) -> str:
    """``idjag-lab:<version>-<hash>``: a new tag whenever the image's inputs change.

    With ``imagePullPolicy: Never`` the tag is the only thing that makes a Deployment roll
    after a rebuild, so it is derived from the files the Dockerfile copies.
    """
    digest = hashlib.sha256()
    inputs = [root / "Dockerfile", root / "pyproject.toml", root / "README.md"]
    for folder in ("lab", "keycloak", "athenz"):
        inputs += sorted(p for p in (root / folder).rglob("*") if p.is_file() and _image_input(p))
    for path in inputs:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{_lab_version}-{digest.hexdigest()[:12]}"


def _image_input(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")


def kube_context(cluster: str = CLUSTER_NAME) -> str:
    """The kubeconfig context kind writes for a cluster."""
    return f"kind-{cluster}"


# --------------------------------------------------------------------------------------------
# kind config


def kind_config(settings: Settings, cluster: str = CLUSTER_NAME) -> dict[str, Any]:
    """The kind ``Cluster`` (kind.x-k8s.io/v1alpha4) with host ports taken from ``LAB_*_PORT``."""
    config = load_manifest("kind/cluster.yaml")[0]
    config["name"] = cluster
    part_of_node_port = {node_port: part for part, node_port in NODE_PORTS.items()}
    for node in config["nodes"]:
        for mapping in node.get("extraPortMappings", []):
            part = part_of_node_port[mapping["containerPort"]]
            mapping["hostPort"] = settings.ports[part]
            # Bind where the health checks and the learner look (LAB_HOST), not always loopback.
            mapping["listenAddress"] = settings.host
    return config


# --------------------------------------------------------------------------------------------
# Manifests


@dataclass(frozen=True)
class RenderOptions:
    """What differs between one lab namespace and another."""

    namespace: str = NAMESPACE
    image: str = f"{IMAGE_REPOSITORY}:dev"
    #: host:port the pods use for the IdP (their 127.0.0.1:<idp port> forwards there).
    idp_target: str = f"{KEYCLOAK_CONTAINER}:{KEYCLOAK_HTTP_PORT}"
    #: NodePort Services for kind's port mappings (single lab only; a room uses port-forward).
    expose: bool = True
    #: Secret data: file name -> bytes. ``None`` renders a placeholder (dry-run, tests).
    keys: Mapping[str, bytes] | None = None
    providers: list[dict[str, Any]] = field(default_factory=list)


def render_namespace(settings: Settings, options: RenderOptions) -> list[dict[str, Any]]:
    """Every object of one lab namespace, ready for server-side apply."""
    docs: list[dict[str, Any]] = []
    files = NAMESPACE_FILES + ((EXPOSE_FILE,) if options.expose else ())
    for name in files:
        docs += load_manifest(name)
    for doc in docs:
        _set_namespace(doc, options.namespace)
        _label(doc)
        _set_ports(doc, settings.ports)
        _set_containers(doc, settings, options)
    _fill_secret(docs, options.keys)
    _fill_providers(docs, options.providers)
    return docs


def _set_namespace(doc: dict[str, Any], namespace: str) -> None:
    if doc["kind"] == "Namespace":
        doc["metadata"]["name"] = namespace
    else:
        doc["metadata"]["namespace"] = namespace


def _label(doc: dict[str, Any]) -> None:
    doc["metadata"].setdefault("labels", {}).update(LAB_LABEL)
    template = doc.get("spec", {}).get("template")
    if template:
        template.setdefault("metadata", {}).setdefault("labels", {}).update(LAB_LABEL)


def _set_ports(doc: dict[str, Any], ports: Mapping[str, int]) -> None:
    """Pods listen on, and Services answer at, the learner's ``LAB_*_PORT`` numbers."""
    if doc["kind"] == "Service":
        for port in doc["spec"]["ports"]:
            port["port"] = ports[PORT_NAMES[port["name"]]]
    for container in _containers(doc):
        for port in container.get("ports", []):
            if port["name"] in PORT_NAMES:
                port["containerPort"] = ports[PORT_NAMES[port["name"]]]


def _containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] != "Deployment":
        return []
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return containers


def _set_containers(doc: dict[str, Any], settings: Settings, options: RenderOptions) -> None:
    for container in _containers(doc):
        container["image"] = options.image
        container["imagePullPolicy"] = "Never"
        container["env"] = pod_env(settings, options.idp_target)


def pod_env(settings: Settings, idp_target: str) -> list[dict[str, str]]:
    """Environment of every lab pod: same ports and issuer URLs as the learner sees.

    The parts put learner-facing URLs (``http://127.0.0.1:8443/zts/v1``) in tokens and
    metadata *and* call each other at those URLs (contracts §0). Inside a pod 127.0.0.1 is the
    pod itself, so ``LAB_POD_FORWARD`` tells :mod:`lab.backends.pod` to forward every other
    part's loopback port to the in-cluster Service that serves it.
    """
    env = {
        "LAB_HOME": POD_HOME,
        "LAB_BACKEND": "kind",
        # Issuers, audiences and resource URLs are built from LAB_HOST and the ports: the pod
        # must name the host the learner's `lab` reaches (a room's listen address).
        "LAB_HOST": settings.host,
        "LAB_REALM": settings.realm,
        "LAB_LOG_LEVEL": settings.log_level,
        "LAB_POLICY_REFRESH_S": str(settings.policy_refresh_s),
        "LAB_POD_FORWARD": pod_forwards(settings, idp_target),
        "LAB_POD_KEYS": POD_KEYS_MOUNT,
        "LAB_POD_PROVIDERS": f"{POD_PROVIDERS_MOUNT}/providers.json",
    }
    if not is_loopback(settings.host):
        env["LAB_POD_LOOPBACK_HOST"] = settings.host
    for part, port in settings.ports.items():
        env[settings.port_variable(part)] = str(port)
    return [{"name": name, "value": value} for name, value in env.items()]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``: inside a pod those already mean the pod itself."""
    import ipaddress

    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def pod_forwards(settings: Settings, idp_target: str) -> str:
    """``port=host:port,…``: loopback port in the pod -> Service (or Keycloak) that answers."""
    rules = [f"{settings.ports['idp']}={idp_target}"]
    for part, service in SERVICE_OF_PORT.items():
        port = settings.ports[part]
        rules.append(f"{port}={service}:{port}")
    return ",".join(rules)


def _fill_secret(docs: list[dict[str, Any]], keys: Mapping[str, bytes] | None) -> None:
    for secret in (d for d in docs if d["kind"] == "Secret"):
        names = SECRET_KEYS[secret["metadata"]["name"]]
        if keys is None:
            secret["data"] = {name: "<redacted>" for name in names}
        else:
            secret["data"] = {name: base64.b64encode(keys[name]).decode() for name in names}


def _fill_providers(docs: list[dict[str, Any]], providers: list[dict[str, Any]]) -> None:
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    configmap["data"] = {"providers.json": json.dumps(providers, indent=2)}


def key_file_names() -> list[str]:
    """Every key file some pod needs (each Secret takes its share, see SECRET_KEYS)."""
    return sorted({name for names in SECRET_KEYS.values() for name in names})


def read_keys(keys_dir: Path) -> dict[str, bytes]:
    """Secret data from ``$LAB_HOME/keys`` (the files must exist; see KindBackend)."""
    return {name: (keys_dir / name).read_bytes() for name in key_file_names()}


def redact(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A copy safe to print: Secret values replaced by their size."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        safe = copy.deepcopy(dict(doc))
        if safe["kind"] == "Secret":
            data = safe.get("data") or {}
            safe["data"] = {k: f"<redacted {len(v)} base64 chars>" for k, v in data.items()}
        out.append(safe)
    return out


# --------------------------------------------------------------------------------------------
# Docker calls (Keycloak container, lab image)


@dataclass(frozen=True)
class DockerCall:
    """One docker SDK call, e.g. ``containers.run`` with its keyword arguments."""

    method: str
    kwargs: dict[str, Any]

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"docker.{self.method}({args})"


def keycloak_run(
    settings: Settings, realm_file: Path = REALM_FILE, network: str | None = KIND_NETWORK
) -> DockerCall:
    """Keycloak in dev mode on the kind network, published only on 127.0.0.1:<idp port>.

    ``KC_HOSTNAME`` pins the issuer to the browser-facing URL, so the ID token's ``iss`` is
    ``http://127.0.0.1:9090/realms/idjag`` whichever way Keycloak is reached; backchannel
    calls from pods (JWKS by container name) follow the request's host.
    """
    idp_port = settings.ports["idp"]
    return DockerCall(
        "containers.run",
        {
            "image": versions.KEYCLOAK_IMAGE,
            "command": ["start-dev", "--import-realm"],
            "name": KEYCLOAK_CONTAINER,
            "detach": True,
            "network": network,
            "ports": {f"{KEYCLOAK_HTTP_PORT}/tcp": (settings.host, idp_port)},
            "volumes": {
                str(realm_file.resolve()): {
                    "bind": f"{KEYCLOAK_IMPORT_DIR}/{realm_file.name}",
                    "mode": "ro",
                }
            },
            "environment": {
                "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
                "KC_BOOTSTRAP_ADMIN_PASSWORD": "admin",
                "KC_HEALTH_ENABLED": "true",
                "KC_HOSTNAME": f"http://{settings.host}:{idp_port}",
                "KC_HOSTNAME_BACKCHANNEL_DYNAMIC": "true",
                # The realm file's ${LAB_ZTS_ISSUER}/${LAB_MCP_RESOURCE}: the audiences an
                # ID-JAG may name follow LAB_HOST and the ports, as with a local Keycloak.
                "LAB_ZTS_ISSUER": settings.endpoints.zts,
                "LAB_MCP_RESOURCE": settings.endpoints.mcp,
            },
            "labels": dict(LAB_LABEL),
        },
    )


def keycloak_ready_url(settings: Settings) -> str:
    """Readiness as the learner needs it: the realm is imported and its discovery answers."""
    return f"{settings.endpoints.idp_issuer}/.well-known/openid-configuration"


def image_build(tag: str, root: Path = REPO_ROOT) -> DockerCall:
    return DockerCall(
        "images.build",
        {"path": str(root), "tag": tag, "rm": True, "labels": dict(LAB_LABEL)},
    )


def docker_run_command(call: DockerCall) -> str:
    """The ``docker run`` line equivalent to a ``containers.run`` call (shown by --dry-run)."""
    kw = call.kwargs
    parts = ["docker", "run", "-d", "--name", kw["name"]]
    if kw.get("network"):
        parts += ["--network", kw["network"]]
    for container_port, (host, port) in kw["ports"].items():
        parts += ["-p", f"{host}:{port}:{container_port.split('/')[0]}"]
    for source, bind in kw["volumes"].items():
        parts += ["-v", f"{source}:{bind['bind']}:{bind['mode']}"]
    for name, value in kw["environment"].items():
        parts += ["-e", f"{name}={value}"]
    for name, value in kw["labels"].items():
        parts += ["--label", f"{name}={value}"]
    return shlex.join(parts + [kw["image"], *kw["command"]])


def kind_create_command(config_path: Path, cluster: str = CLUSTER_NAME) -> list[str]:
    return [
        "kind",
        "create",
        "cluster",
        "--name",
        cluster,
        "--image",
        versions.KIND_NODE_IMAGE,
        "--config",
        str(config_path),
        "--wait",
        "60s",
    ]


def kind_load_command(tag: str, cluster: str = CLUSTER_NAME) -> list[str]:
    return ["kind", "load", "docker-image", tag, "--name", cluster]


def kind_delete_command(cluster: str = CLUSTER_NAME) -> list[str]:
    return ["kind", "delete", "cluster", "--name", cluster]


def pod_reachable_jwks_uri(idp_target: str) -> str:
    """The IdP's JWKS as a pod can fetch it directly (by container or Service name)."""
    return f"http://{idp_target}/realms/{REALM}/protocol/openid-connect/certs"
