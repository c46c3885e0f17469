"""Workshop room: names, realm users, per-learner plans, and the ``lab room`` commands offline."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.backends import room
from lab.backends.base import BackendError
from lab.cli.room import room_app
from lab.config import Settings


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "lab-home"
    monkeypatch.setenv("LAB_HOME", str(home))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    return home


def test_learners_are_numbered_with_their_own_namespace_and_realm() -> None:
    third = room.learners(3)[2]
    assert (third.name, third.namespace, third.realm, third.username) == (
        "learner-03", "idjag-learner-03", "idjag-03", "idjag-learner"
    )  # fmt: skip


@pytest.mark.parametrize("count", [0, 34])
def test_learner_count_out_of_range_is_refused_with_the_range(count: int) -> None:
    with pytest.raises(BackendError) as caught:
        room.learners(count)
    assert caught.value.fix == "choose 1 to 33"


@pytest.mark.parametrize("text", ["3", "learner-03", "idjag-learner-03"])
def test_parse_learner_accepts_number_name_or_namespace(text: str) -> None:
    assert room.parse_learner(text) == room.Learner(3)


def test_parse_learner_refuses_a_name_without_a_number() -> None:
    with pytest.raises(BackendError, match="names no learner"):
        room.parse_learner("alice")


def test_each_learner_gets_the_lab_realm_under_their_own_realm_name() -> None:
    """Own realm = own issuer and keys; its user is the steps' idjag-learner, so every step's
    sign-in and `preferred_username` expectation holds in the room as on the embedded lab."""
    realm = {"id": "idjag", "realm": "idjag", "users": [{"username": "idjag-learner"}]}
    second = room.room_realm(realm, room.Learner(2))
    assert second["realm"] == "idjag-02" and "id" not in second
    assert second["users"] == [{"username": "idjag-learner"}]
    assert realm["realm"] == "idjag"  # the lab's realm is not modified


def test_room_keycloak_holds_every_learner_realm_in_a_secret_not_a_configmap() -> None:
    realms = [room.room_realm({"realm": "idjag"}, learner) for learner in room.learners(2)]
    docs = room.render_keycloak(realms)
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert sorted(secret["data"]) == ["realm-idjag-01.json", "realm-idjag-02.json"]
    realm_json = base64.b64decode(secret["data"]["realm-idjag-02.json"])
    assert json.loads(realm_json)["realm"] == "idjag-02"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["start-dev", "--import-realm"]
    mount = container["volumeMounts"][0]
    assert (mount["mountPath"], mount["readOnly"]) == ("/opt/keycloak/data/import", True)


def test_learner_pods_reach_the_room_keycloak_by_service_name() -> None:
    docs = room.render_learner(Settings(), room.Learner(1), "idjag-lab:t")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "20000=lab-keycloak.idjag-room.svc.cluster.local:8080" in env["LAB_POD_FORWARD"]


def test_port_forward_commands_use_the_learners_own_block_on_the_listen_address() -> None:
    settings = Settings.from_env({"LAB_HOST": "10.1.2.3"})
    commands = room.port_forward_commands(settings, room.Learner(2), "workshop")
    joined = "\n".join(commands)
    assert "-n idjag-room svc/lab-keycloak 20000:8080" in joined
    assert "-n idjag-learner-02 svc/lab-pdp 20020 20021" in joined
    assert "-n idjag-learner-02 svc/lab-docapi 20022 20023" in joined
    assert "-n idjag-learner-02 svc/lab-mcpserver 20024" in joined
    assert all("--address 10.1.2.3" in c and "--context workshop" in c for c in commands)


def test_room_plan_has_one_namespace_per_learner(tmp_path: Path) -> None:
    plan_room = room.Room(Settings(home=tmp_path), dry_run=True)
    actions = plan_room.plan_up(3, image="idjag-lab:t")
    titles = [a.title for a in actions]
    assert titles[:4] == [
        "Create kind cluster", "Build the lab image", "Load the image into kind",
        "Apply the room's Keycloak",
    ]  # fmt: skip
    assert [t for t in titles if t.startswith("Apply idjag-learner")] == [
        "Apply idjag-learner-01", "Apply idjag-learner-02", "Apply idjag-learner-03"
    ]  # fmt: skip
    assert not (tmp_path / "room").exists()  # planning writes nothing


def test_room_on_an_existing_context_creates_no_cluster(tmp_path: Path) -> None:
    titles = [
        a.title for a in room.Room(Settings(home=tmp_path), context="ctx", dry_run=True).plan_up(1)
    ]
    assert "Create kind cluster" not in titles
    assert "Load the image into kind" not in titles


def test_cli_room_up_dry_run_prints_every_learner_manifest(offline_env: Path) -> None:
    result = CliRunner().invoke(room_app, ["up", "--learners", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "# room plan (context kind-idjag-lab, listen address 127.0.0.1)" in result.output
    assert len(re.findall(r"^  name: idjag-learner-0[12]$", result.output, flags=re.M)) == 2
    assert "as realm idjag-01" in result.output and "as realm idjag-02" in result.output
    assert not offline_env.exists()


def test_cli_room_up_dry_run_json_prints_the_plan_as_json(offline_env: Path) -> None:
    """Issue #17: `lab room up --dry-run --json` printed text."""
    result = CliRunner().invoke(room_app, ["up", "--learners", "2", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["dry_run"] is True and plan["learners"] == 2 and plan["plan"]
    assert not offline_env.exists()


def test_cli_room_reset_dry_run_names_the_learner(offline_env: Path) -> None:
    result = CliRunner().invoke(room_app, ["reset", "learner-02", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would reset: idjag-learner-02" in result.output


def test_cli_room_status_without_a_cluster_exits_3_with_a_fix(offline_env: Path) -> None:
    result = CliRunner().invoke(room_app, ["status"])
    assert result.exit_code == 3
    assert "kubeconfig has no usable context 'kind-idjag-lab'" in result.output
    assert "kubectl config get-contexts" in result.output


def test_cli_room_up_refuses_zero_learners(offline_env: Path) -> None:
    result = CliRunner().invoke(room_app, ["up", "--learners", "0", "--dry-run"])
    assert result.exit_code == 2


def test_room_keycloak_issuer_follows_the_idp_port_setting() -> None:
    docs = room.render_keycloak([], idp_port=19090)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KC_HOSTNAME"] == "http://127.0.0.1:19090"


def test_room_realm_from_the_lab_realm_file_still_reads_as_a_realm(tmp_path: Path) -> None:
    from lab.backends import kind_plan

    realm_module = pytest.importorskip(
        "lab.idp.realm", reason="lab/idp/realm.py is not written yet"
    )
    realm = json.loads(kind_plan.REALM_FILE.read_text())
    own = room.room_realm(realm, room.Learner(2))
    path = tmp_path / "realm-idjag-02.json"
    path.write_text(json.dumps(own))
    loaded = realm_module.load_realm(path)  # the embedded IdP's own strict reader
    assert loaded is not None
    assert [u["username"] for u in own["users"]] == [u["username"] for u in realm["users"]]
    assert own["clients"] == realm["clients"]  # same agent client (ai.agent) in every realm
