"""Rendered workshop rooms of 1, 3 and 30 learners: distinct ports and issuers, isolation, sizing,
secrets, and offline validation (kubernetes-validate, strict) for Kubernetes 1.30 to 1.34."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from lab.backends import kind_plan as plan
from lab.backends import room, room_plan, versions
from lab.config import ADMIN_PRINCIPAL, Settings

FAKE_KEYS = {name: b"-----BEGIN TEST-----\n" for name in plan.key_file_names()}
SINGLE_LAB_PORTS = {4443, 8443, 14443, 14442, 8101, 9090}
SCHEMA_VERSIONS = ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]
SIZES = [1, 3, 30]
PASSWORD = "learner-password-Zq7"  # what a realm file's credentials would hold


def room_docs(count: int) -> list[dict[str, Any]]:
    people = room.learners(count)
    realm = {
        "realm": "idjag",
        "users": [{"username": "idjag-learner", "credentials": [{"value": PASSWORD}]}],
    }
    docs = room.render_keycloak([room.room_realm(realm, learner) for learner in people])
    for learner in people:
        docs += room.render_learner(Settings(), learner, "idjag-lab:t", FAKE_KEYS)
    return docs


def in_namespace(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"].get("namespace") == namespace]


@pytest.mark.parametrize("count", SIZES)
def test_no_two_learners_share_a_port_or_an_issuer(count: int) -> None:
    seen_ports: dict[int, str] = {}
    issuers = set()
    for learner in room.learners(count):
        settings = room_plan.learner_settings(Settings(), learner.number)
        for part, port in settings.ports.items():
            if part == "idp":
                assert port == room_plan.ROOM_PORT_BASE  # the one shared IdP
                continue
            assert port not in seen_ports, f"{learner.name} reuses {seen_ports.get(port)}'s port"
            assert port not in SINGLE_LAB_PORTS | {room_plan.ROOM_PORT_BASE}
            seen_ports[port] = learner.name
        issuers.add(settings.endpoints.zts)
    assert len(issuers) == count


@pytest.mark.parametrize("count", SIZES)
def test_every_learner_namespace_has_its_policy_quota_and_limits(count: int) -> None:
    docs = room_docs(count)
    for learner in room.learners(count):
        kinds = {d["kind"]: d for d in in_namespace(docs, learner.namespace)}
        assert {"NetworkPolicy", "ResourceQuota", "LimitRange"} <= set(kinds)
        policy = kinds["NetworkPolicy"]["spec"]
        assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]
        assert policy["ingress"] == [{"from": [{"podSelector": {}}]}]  # own namespace only
        egress_namespaces = [
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for rule in policy["egress"]
            for peer in rule["to"]
            if "namespaceSelector" in peer
        ]
        assert sorted(egress_namespaces) == ["idjag-room", "kube-system"]  # the IdP and DNS
        assert kinds["ResourceQuota"]["spec"]["hard"]["pods"] == "4"


@pytest.mark.parametrize("count", SIZES)
def test_every_container_has_requests_and_limits(count: int) -> None:
    for doc in room_docs(count):
        for container in plan._containers(doc):
            resources = container.get("resources", {})
            assert set(resources) == {"requests", "limits"}, doc["metadata"]["name"]
            assert set(resources["requests"]) == {"cpu", "memory"}
            assert set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("count", SIZES)
def test_no_private_key_or_password_outside_a_secret(count: int) -> None:
    docs = room_docs(count)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert PASSWORD not in str(doc.get("data", {}))
            assert ".pem" not in str(doc.get("data", {}))
    admin_private = f"{ADMIN_PRINCIPAL}.pem"
    assert not [d for d in docs if d["kind"] == "Secret" and admin_private in d.get("data", {})]
    realm_secret = next(d for d in docs if d["metadata"]["name"] == "lab-keycloak-realm")
    assert realm_secret["kind"] == "Secret"


@pytest.mark.parametrize("count", SIZES)
def test_every_learner_has_their_own_realm_issuer(count: int) -> None:
    issuers = {
        room_plan.learner_settings(Settings(), learner.number).endpoints.idp_issuer
        for learner in room.learners(count)
    }
    assert len(issuers) == count
    secret = next(d for d in room_docs(count) if d["metadata"]["name"] == "lab-keycloak-realm")
    assert len(secret["data"]) == count


def test_learner_cap_follows_the_node_pod_limit() -> None:
    reserved = room_plan.RESERVED_PODS
    assert (110 - reserved) // room_plan.PODS_PER_LEARNER == room.MAX_LEARNERS
    worst = reserved + room.MAX_LEARNERS * room_plan.PODS_PER_LEARNER
    assert worst <= room_plan.NODE_POD_LIMIT
    assert len(room.learners(30)) == 30
    with pytest.raises(room.BackendError):
        room.learners(room.MAX_LEARNERS + 1)


#: 30 learners at the pinned version; the other versions see the same shapes with 1 and 3.
VALIDATIONS = (
    [(1, v) for v in SCHEMA_VERSIONS]
    + [(3, v) for v in SCHEMA_VERSIONS]
    + [(30, versions.KUBERNETES_SCHEMA_VERSION)]
)


@pytest.mark.parametrize(("count", "version"), VALIDATIONS)
def test_rendered_room_validates_strictly_offline(count: int, version: str) -> None:
    for doc in room_docs(count):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{name} is invalid for Kubernetes {version}: {exc.message}")
