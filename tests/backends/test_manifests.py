"""manifests/ and everything the kind plan renders validate offline against the Kubernetes
API schemas of the pinned version (kubernetes-validate's bundled schemas, strict mode)."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from lab.backends import kind_plan as plan
from lab.backends import room, room_plan, versions
from lab.config import Settings

FAKE_KEYS = {name: b"-----BEGIN TEST-----\n" for name in plan.key_file_names()}
IMAGE = "idjag-lab:0.1.0-test"
K8S_FILES = sorted(
    str(p.relative_to(plan.MANIFESTS_DIR))
    for p in plan.MANIFESTS_DIR.rglob("*.yaml")
    if p.parent.name != "kind"
)


def single_lab_docs(settings: Settings | None = None) -> list[dict[str, Any]]:
    options = plan.RenderOptions(image=IMAGE, keys=FAKE_KEYS)
    return plan.render_namespace(settings or Settings(), options)


def learner_docs(number: int) -> list[dict[str, Any]]:
    return room.render_learner(Settings(), room.Learner(number), IMAGE, FAKE_KEYS)


def room_keycloak_docs() -> list[dict[str, Any]]:
    realm = {"realm": "idjag", "users": []}
    people = room.learners(2)
    return room.render_keycloak([room.room_realm(realm, learner) for learner in people])


def assert_valid(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, versions.KUBERNETES_SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        pytest.fail(
            f"{name} is invalid for Kubernetes {versions.KUBERNETES_SCHEMA_VERSION}: {exc.message}"
        )


@pytest.mark.parametrize("name", K8S_FILES)
def test_manifest_file_validates_as_written(name: str) -> None:
    docs = plan.load_manifest(name)
    assert docs, f"{name} holds no object"
    for doc in docs:
        assert_valid(doc)


def test_rendered_single_lab_validates() -> None:
    docs = single_lab_docs()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "Secret", "Service"
    ]  # fmt: skip
    for doc in docs:
        assert_valid(doc)


def test_rendered_with_moved_ports_validates_and_uses_them() -> None:
    settings = Settings.from_env({"LAB_ZTS_PORT": "18443", "LAB_MCP_PORT": "18101"})
    docs = single_lab_docs(settings)
    for doc in docs:
        assert_valid(doc)
    pdp = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "lab-pdp")
    assert {p["name"]: p["port"] for p in pdp["spec"]["ports"]} == {"zms": 4443, "zts": 18443}


@pytest.mark.parametrize("number", [1, 2, 17])
def test_rendered_learner_namespace_validates(number: int) -> None:
    for doc in learner_docs(number):
        assert_valid(doc)


def test_room_keycloak_validates() -> None:
    for doc in room_keycloak_docs():
        assert_valid(doc)


def test_a_misspelled_field_is_caught_by_the_strict_schema() -> None:
    # Guards the guard: strict validation must reject what the API server would prune silently.
    deployment = copy.deepcopy(next(d for d in single_lab_docs() if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicey"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, versions.KUBERNETES_SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize(
    "docs",
    [single_lab_docs(), learner_docs(3), room_keycloak_docs()],
    ids=["lab", "learner", "room"],
)
def test_every_object_and_pod_template_carries_the_lab_label(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        assert doc["metadata"]["labels"][plan.PART_OF_KEY] == "idjag-lab", doc["metadata"]["name"]
        template = doc.get("spec", {}).get("template")
        if template:
            assert template["metadata"]["labels"][plan.PART_OF_KEY] == "idjag-lab"


def test_lab_images_are_the_local_tag_and_never_pulled() -> None:
    containers = [c for d in single_lab_docs() for c in plan._containers(d)]
    assert len(containers) == 3
    assert {c["image"] for c in containers} == {IMAGE}
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}


def test_room_keycloak_uses_the_pinned_image_pulled_only_if_absent() -> None:
    containers = [c for d in room_keycloak_docs() for c in plan._containers(d)]
    assert [(c["image"], c["imagePullPolicy"]) for c in containers] == [
        (versions.KEYCLOAK_IMAGE, "IfNotPresent")
    ]


def _without_namespace(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in copy.deepcopy(docs):
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = "<ns>"
        else:
            doc["metadata"]["namespace"] = "<ns>"
        for subject in doc.get("subjects", []):  # the learner's RoleBinding names its account
            subject["namespace"] = "<ns>"
        out.append(doc)
    return out


def test_learner_manifests_differ_only_by_namespace_realm_and_port_block() -> None:
    first, second = learner_docs(1), learner_docs(2)
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in first} == {
        "idjag-learner-01"
    }
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in second} == {
        "idjag-learner-02"
    }
    assert _without_block(first, 1) == _without_block(second, 2)


def _without_block(docs: list[dict[str, Any]], number: int) -> list[dict[str, Any]]:
    """Namespace, realm and the learner's own port numbers replaced by placeholders."""
    text = json.dumps(_without_namespace(docs))
    text = text.replace(f'"{room_plan.learner_realm(number)}"', '"<realm>"')
    for part, offset in room_plan.PORT_OFFSETS.items():
        port = room_plan.learner_ports(Settings(), number)[part]
        text = re.sub(rf"\b{port}\b", str(99990 + offset), text)  # stays valid JSON
    loaded: list[dict[str, Any]] = json.loads(text)
    return loaded


def test_learner_namespace_has_no_node_ports() -> None:
    # NodePorts are cluster-wide: two learners cannot both own 30843.
    services = [d for d in learner_docs(1) if d["kind"] == "Service"]
    assert services
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)


def test_each_part_gets_only_the_keys_it_needs() -> None:
    secrets = {d["metadata"]["name"]: d["data"] for d in single_lab_docs() if d["kind"] == "Secret"}
    private = {
        name: sorted(k for k in data if not k.endswith(".pub.pem"))
        for name, data in secrets.items()
    }
    assert private == {
        "lab-pdp-keys": ["pdp-signing.pem"],  # the admin's public key only
        "lab-docapi-keys": [],
        "lab-mcpserver-keys": ["mcp.api-mcp.pem"],
    }
    assert all("ai.agent.pem" not in data for data in secrets.values())  # stays on the laptop
    assert (
        base64.b64decode(secrets["lab-docapi-keys"]["user.athenz_admin.pub.pem"])
        == FAKE_KEYS["user.athenz_admin.pub.pem"]
    )


def test_each_deployment_mounts_its_own_secret() -> None:
    mounted = {
        d["metadata"]["name"]: next(
            v["secret"]["secretName"]
            for v in d["spec"]["template"]["spec"]["volumes"]
            if "secret" in v
        )
        for d in single_lab_docs()
        if d["kind"] == "Deployment"
    }
    assert mounted == {
        "lab-pdp": "lab-pdp-keys",
        "lab-docapi": "lab-docapi-keys",
        "lab-mcpserver": "lab-mcpserver-keys",
    }


def test_manifest_readme_lists_every_file() -> None:
    readme = (plan.MANIFESTS_DIR / "README.md").read_text()
    for path in Path(plan.MANIFESTS_DIR).rglob("*.yaml"):
        assert f"`{path.relative_to(plan.MANIFESTS_DIR)}`" in readme
