"""The kind backend's plan, rendered offline: kind config, docker calls, dry-run output."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lab.backends import kind_plan as plan
from lab.backends import versions
from lab.backends.kind import KindBackend
from lab.config import Settings

#: The part of kind's v1alpha4 ``Cluster`` the lab uses (kind's config is not a Kubernetes API
#: object, so kubernetes-validate has no schema for it). Field names as in kind's
#: pkg/apis/config/v1alpha4/types.go; anything else is a typo kind would reject.
KIND_CLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "apiVersion", "nodes"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "networking": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
                "apiServerAddress": {"type": "string"},
                "apiServerPort": {"type": "integer", "minimum": 0, "maximum": 65535},
                "podSubnet": {"type": "string"},
                "serviceSubnet": {"type": "string"},
                "disableDefaultCNI": {"type": "boolean"},
                "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
                "dnsSearch": {"type": "array", "items": {"type": "string"}},
            },
        },
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "additionalProperties": False,
                "properties": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string"},
                    "extraPortMappings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["containerPort", "hostPort"],
                            "additionalProperties": False,
                            "properties": {
                                "containerPort": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": 65535,
                                },
                                "hostPort": {"type": "integer", "minimum": 0, "maximum": 65535},
                                "listenAddress": {"type": "string", "format": "ipv4"},
                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                            },
                        },
                    },
                },
            },
        },
    },
}


def validate_kind_config(config: dict[str, Any]) -> None:
    jsonschema.validate(config, KIND_CLUSTER_SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "lab-home"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No docker engine and no kubeconfig reachable: a dry run must not need either."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))


def test_kind_config_file_has_the_kind_cluster_shape() -> None:
    validate_kind_config(plan.load_manifest("kind/cluster.yaml")[0])


@pytest.mark.parametrize("listen", ["127.0.0.1", "192.168.1.20"])
def test_room_kind_config_has_the_kind_cluster_shape(listen: str) -> None:
    from lab.backends import room_plan

    validate_kind_config(room_plan.room_kind_config(listen))


def test_kind_config_schema_rejects_a_misspelled_field() -> None:
    config = plan.kind_config(Settings())
    config["nodes"][0]["extraPortMapings"] = []
    with pytest.raises(jsonschema.ValidationError):
        validate_kind_config(config)


def test_kind_config_maps_every_pdp_docapi_mcp_port_on_loopback_only() -> None:
    config = plan.kind_config(Settings())
    validate_kind_config(config)
    mappings = config["nodes"][0]["extraPortMappings"]
    assert {m["listenAddress"] for m in mappings} == {"127.0.0.1"}
    assert {m["hostPort"]: m["containerPort"] for m in mappings} == {
        4443: 30443, 8443: 30843, 14443: 31443, 14442: 31442, 8101: 30101
    }  # fmt: skip


def test_kind_config_host_ports_follow_lab_port_settings() -> None:
    settings = Settings.from_env({"LAB_ZTS_PORT": "18443", "LAB_DOCAPI_PORT": "24443"})
    mappings = plan.kind_config(settings)["nodes"][0]["extraPortMappings"]
    host_ports = {m["containerPort"]: m["hostPort"] for m in mappings}
    assert host_ports[plan.NODE_PORTS["zts"]] == 18443
    assert host_ports[plan.NODE_PORTS["docapi_protected"]] == 24443


def test_node_ports_in_kind_config_match_the_expose_services() -> None:
    exposed = {
        p["nodePort"] for doc in plan.load_manifest(plan.EXPOSE_FILE) for p in doc["spec"]["ports"]
    }
    mapped = {
        m["containerPort"] for m in plan.kind_config(Settings())["nodes"][0]["extraPortMappings"]
    }
    assert exposed == mapped == set(plan.NODE_PORTS.values())


def test_keycloak_runs_pinned_image_in_dev_mode_importing_the_realm() -> None:
    call = plan.keycloak_run(Settings())
    kw = call.kwargs
    assert call.method == "containers.run"
    assert kw["image"] == versions.KEYCLOAK_IMAGE
    assert re.fullmatch(r"quay\.io/keycloak/keycloak:26\.\d+\.\d+", kw["image"])
    assert kw["command"] == ["start-dev", "--import-realm"]
    assert kw["network"] == "kind"
    assert kw["ports"] == {"8080/tcp": ("127.0.0.1", 9090)}
    assert kw["labels"] == plan.LAB_LABEL


def test_keycloak_mounts_the_realm_file_the_embedded_idp_serves_read_only() -> None:
    volumes = plan.keycloak_run(Settings()).kwargs["volumes"]
    ((source, bind),) = volumes.items()
    assert Path(source) == (plan.REPO_ROOT / "keycloak" / "realm-idjag.json").resolve()
    assert bind == {"bind": "/opt/keycloak/data/import/realm-idjag.json", "mode": "ro"}


def test_embedded_idp_defaults_to_the_same_realm_file() -> None:
    app = pytest.importorskip(
        "lab.idp.app", reason="the embedded IdP (lab/idp/app.py) is not written yet"
    )
    default = inspect.signature(app.create_app).parameters["realm_file"].default
    assert (plan.REPO_ROOT / Path(default)).resolve() == plan.REALM_FILE.resolve()


def test_keycloak_issuer_is_pinned_to_the_learner_facing_url() -> None:
    env = plan.keycloak_run(Settings.from_env({"LAB_IDP_PORT": "19090"})).kwargs["environment"]
    assert env["KC_HOSTNAME"] == "http://127.0.0.1:19090"
    assert env["KC_HOSTNAME_BACKCHANNEL_DYNAMIC"] == "true"


def test_docker_run_line_shows_the_same_call() -> None:
    line = plan.docker_run_command(plan.keycloak_run(Settings()))
    assert line.startswith("docker run -d --name idjag-lab-keycloak --network kind")
    assert "-p 127.0.0.1:9090:8080" in line
    assert "/opt/keycloak/data/import/realm-idjag.json:ro" in line
    assert line.endswith(f"{versions.KEYCLOAK_IMAGE} start-dev --import-realm")


def test_image_tag_changes_when_the_code_changes(tmp_path: Path) -> None:
    for name in ("Dockerfile", "pyproject.toml", "README.md"):
        (tmp_path / name).write_text(name)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "x.py").write_text("a = 1\n")
    before = plan.image_tag(tmp_path)
    (tmp_path / "lab" / "__pycache__").mkdir()
    (tmp_path / "lab" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert plan.image_tag(tmp_path) == before  # bytecode is not an input
    (tmp_path / "lab" / "x.py").write_text("a = 2\n")
    after = plan.image_tag(tmp_path)
    assert before != after
    assert after.startswith("idjag-lab:0.1.0-")


def test_pod_env_keeps_learner_ports_and_forwards_other_parts_to_services() -> None:
    settings = Settings.from_env({"LAB_ZTS_PORT": "18443"})
    env = {e["name"]: e["value"] for e in plan.pod_env(settings, "idjag-lab-keycloak:8080")}
    assert env["LAB_HOME"] == "/var/lib/lab"
    assert env["LAB_ZTS_PORT"] == "18443"
    assert env["LAB_HOST"] == "127.0.0.1"  # endpoints stay http://127.0.0.1:... inside pods
    assert "LAB_POD_LOOPBACK_HOST" not in env  # loopback already is the pod's own forwarders
    rules = dict(rule.split("=") for rule in env["LAB_POD_FORWARD"].split(","))
    assert rules == {
        "9090": "idjag-lab-keycloak:8080",
        "4443": "lab-pdp:4443",
        "18443": "lab-pdp:18443",
        "14443": "lab-docapi:14443",
        "14442": "lab-docapi:14442",
        "8101": "lab-mcpserver:8101",
    }


def test_pod_env_names_a_non_loopback_host_and_routes_it_to_the_pods_forwarders() -> None:
    settings = Settings.from_env({"LAB_HOST": "192.0.2.10"})
    env = {e["name"]: e["value"] for e in plan.pod_env(settings, "idjag-lab-keycloak:8080")}
    assert env["LAB_HOST"] == "192.0.2.10"  # issuers inside the pod = what the learner reaches
    assert env["LAB_POD_LOOPBACK_HOST"] == "192.0.2.10"
    pod_settings = Settings.from_env(env)
    assert pod_settings.endpoints == settings.endpoints


def test_dry_run_plan_lists_actions_in_order_without_a_daemon(home: Path, offline: None) -> None:
    backend = KindBackend(Settings(home=home), dry_run=True)
    endpoints = backend.up()
    text = backend.last_plan
    titles = re.findall(r"^## \d+\. (.+)$", text, flags=re.MULTILINE)
    assert titles == [
        "Generate service keys", "Create kind cluster", "Build the lab image",
        "Load the image into kind", "Start Keycloak", "Wait for Keycloak", "Apply manifests",
        "Wait for rollout", "Check every endpoint where the learner reaches it", "Record endpoints",
    ]  # fmt: skip
    assert endpoints.zts == "http://127.0.0.1:8443/zts/v1"
    assert not (home / "keys").exists()  # a dry run writes nothing
    assert not (home / "runtime.json").exists()


def test_dry_run_plan_shows_kind_config_docker_calls_and_manifests(
    home: Path, offline: None
) -> None:
    text = KindBackend(Settings(home=home), dry_run=True).describe_plan(image="idjag-lab:t")
    assert f"kind create cluster --name idjag-lab --image {versions.KIND_NODE_IMAGE}" in text
    assert "apiVersion: kind.x-k8s.io/v1alpha4" in text
    assert "docker.images.build(path=" in text
    assert "kind load docker-image idjag-lab:t --name idjag-lab" in text
    assert "docker.containers.run(image='quay.io/keycloak/keycloak:26" in text
    assert text.count("kind: Deployment") == 3
    assert "image: idjag-lab:t" in text
    assert "imagePullPolicy: Never" in text
    for pin in versions.pinned().values():
        assert pin in text


def test_dry_run_never_prints_key_material(home: Path, offline: None) -> None:
    from lab.backends.kind import ensure_local_keys

    settings = Settings(home=home)
    ensure_local_keys(settings.keys_dir)
    text = KindBackend(settings, dry_run=True).describe_plan()
    secret_body = settings.key_file("user.athenz_admin").read_text().splitlines()[1]
    assert secret_body not in text
    assert "<redacted" in text


def test_dry_run_manifests_in_the_plan_parse_back(home: Path, offline: None) -> None:
    text = KindBackend(Settings(home=home), dry_run=True).describe_plan()
    block = text.split("server-side apply (field manager idjag-lab):\n", 1)[1].split("\n## ", 1)[0]
    docs = [d for d in yaml.safe_load_all(block) if d]
    assert [d["kind"] for d in docs][:2] == ["Namespace", "Secret"]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "idjag-lab"
    }


def test_existing_cluster_plan_skips_kind_and_forwards_ports(home: Path, offline: None) -> None:
    backend = KindBackend(Settings(home=home), context="my-ctx", namespace="team-a", dry_run=True)
    text = backend.describe_plan(image="idjag-lab:t")
    assert "kind create cluster" not in text
    assert "kind load" not in text
    assert "NodePort" not in text
    assert "namespace: team-a" in text
    assert (
        "kubectl --context my-ctx -n team-a port-forward --address 127.0.0.1 svc/lab-pdp 4443 8443"
        in text
    )
    assert "svc/lab-docapi 14443 14442" in text
    assert (
        "docker run -d --name idjag-lab-keycloak -p 127.0.0.1:9090:8080" in text
    )  # no kind network
    assert backend.render_options("t").idp_target == "host.docker.internal:9090"


def test_dry_run_down_describes_rm_f_of_cluster_and_keycloak(home: Path, offline: None) -> None:
    backend = KindBackend(Settings(home=home), dry_run=True)
    backend.down()
    assert "kind delete cluster --name idjag-lab" in backend.last_plan
    assert "docker rm -f idjag-lab-keycloak" in backend.last_plan


def test_runtime_record_has_the_embedded_shape_plus_the_target(home: Path) -> None:
    record = KindBackend(Settings(home=home)).runtime_record("idjag-lab:t")
    assert record["backend"] == "kind"
    assert record["endpoints"]["idp_issuer"] == "http://127.0.0.1:9090/realms/idjag"
    assert record["endpoints"]["mcp"] == "http://127.0.0.1:8101/mcp"
    assert (record["context"], record["namespace"]) == ("kind-idjag-lab", "idjag-lab")


def test_dockerfile_base_image_matches_the_pin() -> None:
    dockerfile = (plan.REPO_ROOT / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE={versions.PYTHON_IMAGE}" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "lab.backends.pod"]' in dockerfile


def test_render_options_default_to_kind_keycloak_container() -> None:
    options = KindBackend(replace(Settings(), home=Path("/tmp/x"))).render_options("t")
    assert options.idp_target == "idjag-lab-keycloak:8080"
    assert options.expose is True
    assert plan.pod_reachable_jwks_uri(options.idp_target) == (
        "http://idjag-lab-keycloak:8080/realms/idjag/protocol/openid-connect/certs"
    )


def test_dockerfile_copies_exactly_what_the_image_tag_hashes_and_nothing_ignored() -> None:
    dockerfile = (plan.REPO_ROOT / "Dockerfile").read_text()
    copied = set()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            copied.update(line.split()[1:-1])
    assert copied == {"pyproject.toml", "README.md", "lab", "keycloak", "athenz"}
    ignored = {
        line.strip()
        for line in (plan.REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not copied & ignored
    source = inspect.getsource(plan.image_tag)
    for name in copied:
        assert f'"{name}"' in source, f"image_tag does not hash {name}"


def test_lab_host_is_where_the_plan_binds_and_health_checks(home: Path, offline: None) -> None:
    settings = Settings.from_env({"LAB_HOST": "192.168.56.10", "LAB_HOME": str(home)})
    mappings = plan.kind_config(settings)["nodes"][0]["extraPortMappings"]
    assert {m["listenAddress"] for m in mappings} == {"192.168.56.10"}
    keycloak = plan.keycloak_run(settings).kwargs
    assert keycloak["ports"]["8080/tcp"] == ("192.168.56.10", settings.ports["idp"])
    assert keycloak["environment"]["KC_HOSTNAME"] == f"http://192.168.56.10:{settings.ports['idp']}"
    backend = KindBackend(settings, context="my-ctx", namespace="team-a", dry_run=True)
    text = backend.describe_plan(image="idjag-lab:t")
    assert "port-forward --address 192.168.56.10 svc/lab-pdp" in text
    assert "GET http://192.168.56.10:8443/healthz" in text
    assert "127.0.0.1" not in text.split("GET ", 1)[1]
