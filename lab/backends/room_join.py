"""Join bundles: what a learner needs to point their own ``lab`` at their room namespace.

``lab room up`` writes one bundle per learner (``$LAB_HOME/room/learner-NN/join.json``, 0600):
their endpoints on the room's listen address and port block, their namespace and kube context,
their Keycloak user and password, the IdP URL, their own admin key (each learner's namespace
trusts only that learner's admin public key), their MCP server's key (steps sign the MCP
server's token exchange by hand with it, as on a single lab) and a kubeconfig holding only
their namespace's token (lab.backends.room_plan.learner_access: restart their PDP, record their
progress).
``lab room join FILE`` on the learner's laptop turns it into a ``$LAB_HOME`` the kind backend
reads: the admin key and kubeconfig (0600) and ``runtime.json`` (``backend: kind``), so
``lab step N``, ``lab verify`` and ``lab reset`` go to that namespace.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from lab.backends import room_plan
from lab.backends.base import BackendError
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, MCP_PRINCIPAL, Settings
from lab.oauth.jose import PrivateKey, ensure_private_key, public_pem, write_private_key

BUNDLE_KIND = "idjag-lab-room-join"
BUNDLE_VERSION = 1
#: Keys of the learner's own parts that their steps sign with (principal names).
BUNDLE_SERVICE_KEYS = (MCP_PRINCIPAL,)
#: The learner's namespaced kubeconfig in their ``$LAB_HOME`` (0600).
KUBECONFIG_FILE = "room-kubeconfig.yaml"


def make_bundle(
    settings: Settings,
    number: int,
    namespace: str,
    context: str,
    username: str,
    password: str,
    admin_key_pem: bytes,
    kubeconfig: dict[str, Any] | None = None,
    service_keys: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """One learner's bundle (``settings.host`` is the room's listen address)."""
    own = room_plan.learner_settings(settings, number)
    bundle = {
        "kind": BUNDLE_KIND,
        "version": BUNDLE_VERSION,
        "learner": f"learner-{number:02d}",
        "namespace": namespace,
        "context": context,
        "username": username,
        "password": password,
        "idp_issuer": own.endpoints.idp_issuer,
        "endpoints": own.endpoints.as_dict(),
        "ports": dict(own.ports),
        "host": own.host,
        "admin_key_pem": admin_key_pem.decode(),
    }
    if kubeconfig is not None:
        bundle["kubeconfig"] = kubeconfig
    if service_keys:
        bundle["service_keys"] = {name: pem.decode() for name, pem in service_keys.items()}
    return bundle


def write_bundle(path: Path, bundle: dict[str, Any]) -> None:
    """The bundle holds a private key and a password: owner-only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(bundle, out, indent=2)


def read_bundle(path: Path) -> dict[str, Any]:
    try:
        bundle = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(
            f"cannot read join bundle {path}: {exc}", "ask for your join.json again"
        ) from None
    required = {"namespace", "endpoints", "ports", "admin_key_pem", "context"}
    if (
        not isinstance(bundle, dict)
        or bundle.get("kind") != BUNDLE_KIND
        or bundle.get("version") != BUNDLE_VERSION
        or not required <= set(bundle)
    ):
        raise BackendError(
            f"{path} is not a room join bundle (version {BUNDLE_VERSION})",
            "use the join.json your instructor's `lab room up` wrote for you",
        )
    return bundle


def apply_bundle(bundle: dict[str, Any], settings: Settings) -> Path:
    """Write the learner's ``$LAB_HOME``: their admin key and the kind runtime record."""
    home = settings.home
    key_path = settings.key_file(ADMIN_PRINCIPAL)
    pem = str(bundle["admin_key_pem"]).encode()
    try:
        key = load_private_key_bytes(pem)
    except ValueError as exc:
        raise BackendError(
            f"the bundle's admin key is unreadable: {exc}", "ask for your join.json again"
        ) from None
    write_private_key(key_path, key)
    key_path.with_name(f"{ADMIN_PRINCIPAL}.pub.pem").write_bytes(public_pem(key))
    # The learner's own MCP server's key: steps register it, and steps 6, 7 and 15 make the MCP
    # server's token exchange by hand, signed with it (as on a single lab, where it is theirs).
    for principal in BUNDLE_SERVICE_KEYS:
        pem_text = dict(bundle.get("service_keys") or {}).get(principal)
        if pem_text is None:
            continue
        try:
            service_key = load_private_key_bytes(str(pem_text).encode())
        except ValueError as exc:
            raise BackendError(
                f"the bundle's {principal} key is unreadable: {exc}", "ask for your join.json again"
            ) from None
        path = settings.key_file(principal)
        write_private_key(path, service_key)
        path.with_name(f"{principal}.pub.pem").write_bytes(public_pem(service_key))
    # The agent's own key is made here and never leaves the laptop (steps register it).
    ensure_private_key(settings.key_file(AGENT_PRINCIPAL))
    kubeconfig_path: str | None = None
    if isinstance(bundle.get("kubeconfig"), dict):
        path = home / KUBECONFIG_FILE
        _write_private(path, yaml.safe_dump(bundle["kubeconfig"], sort_keys=False))
        kubeconfig_path = str(path.resolve())
    record = {
        "pid": None,
        "backend": "kind",
        "endpoints": dict(bundle["endpoints"]),
        "ports": dict(bundle["ports"]),
        "context": bundle["context"],
        "namespace": bundle["namespace"],
        "cluster": None,
        "room_learner": bundle.get("learner"),
        "kubeconfig": kubeconfig_path,
        "joined": time.time(),
    }
    _write_private(settings.runtime_file, json.dumps(record, indent=2))
    return settings.runtime_file


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def load_private_key_bytes(pem: bytes) -> PrivateKey:
    """A private key from PEM bytes (the bundle carries text, not a file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("only RSA and P-256 EC keys are supported")
    return key
