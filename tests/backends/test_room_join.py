"""The join flow offline: the instructor's bundle -> the learner's $LAB_HOME -> the kind
backend's Endpoints point at that learner's own port block and namespace."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.backends import room, room_join, room_plan
from lab.backends.kind import KindBackend, ensure_local_keys
from lab.cli.room import room_app
from lab.config import ADMIN_PRINCIPAL, Settings
from lab.oauth.jose import key_id, load_private_key


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    instructor = Settings.from_env(
        {"LAB_HOME": str(tmp_path / "instructor"), "LAB_HOST": "10.9.8.7"}
    )
    workshop = room.Room(instructor, context="kind-idjag-lab")
    learner = room.Learner(3)
    keys = replace(workshop.settings, home=workshop.learner_home(learner))
    ensure_local_keys(keys.keys_dir)  # what EnsureKeys makes in `room up`
    return workshop.write_join_bundle(learner)


def test_join_bundle_is_owner_only_and_names_the_learners_own_endpoints(bundle_file: Path) -> None:
    assert stat.S_IMODE(bundle_file.stat().st_mode) == 0o600
    bundle = json.loads(bundle_file.read_text())
    assert bundle["namespace"] == "idjag-learner-03"
    assert bundle["username"] == "idjag-learner"  # the steps' user, in the learner's own realm
    assert bundle["idp_issuer"] == f"http://10.9.8.7:{room_plan.ROOM_PORT_BASE}/realms/idjag-03"
    assert bundle["endpoints"]["zts"].startswith("http://10.9.8.7:20031/")
    assert "BEGIN PRIVATE KEY" in bundle["admin_key_pem"]


def test_lab_room_join_makes_the_learners_lab_target_their_namespace(
    bundle_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner_home = tmp_path / "laptop"
    monkeypatch.setenv("LAB_HOME", str(learner_home))
    result = CliRunner().invoke(room_app, ["join", str(bundle_file)])
    assert result.exit_code == 0, result.output
    assert "idjag-learner-03" in result.output

    settings = Settings(home=learner_home)
    endpoints = KindBackend(settings).endpoints()
    assert endpoints.zms.startswith("http://10.9.8.7:20030/")
    assert endpoints.zts.startswith("http://10.9.8.7:20031/")
    assert endpoints.docapi_protected == "http://10.9.8.7:20032"
    assert endpoints.docapi_unprotected == "http://10.9.8.7:20033"
    assert endpoints.mcp.startswith("http://10.9.8.7:20034")
    assert endpoints.idp_issuer == f"http://10.9.8.7:{room_plan.ROOM_PORT_BASE}/realms/idjag-03"
    runtime = json.loads(settings.runtime_file.read_text())
    assert (runtime["backend"], runtime["namespace"]) == ("kind", "idjag-learner-03")

    admin = settings.key_file(ADMIN_PRINCIPAL)
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    issued = json.loads(bundle_file.read_text())["admin_key_pem"].encode()
    assert key_id(load_private_key(admin)) == key_id(room_join.load_private_key_bytes(issued))


def test_join_refuses_a_file_that_is_not_a_bundle(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"namespace": "x"}))
    result = CliRunner().invoke(room_app, ["join", str(other)])
    assert result.exit_code != 0
    assert "not a room join bundle" in result.output


def test_a_joined_learner_never_owns_the_rooms_cluster(
    bundle_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner_home = tmp_path / "laptop"
    room_join.apply_bundle(room_join.read_bundle(bundle_file), Settings(home=learner_home))
    backend = KindBackend(Settings(home=learner_home))
    assert backend.creates_cluster is False  # `lab down` leaves the instructor's kind alone
    assert (backend.context, backend.namespace) == ("kind-idjag-lab", "idjag-learner-03")


def test_join_brings_the_learners_mcp_key_and_makes_the_agents_key_locally(
    bundle_file: Path, tmp_path: Path
) -> None:
    """Steps register the MCP server's key and sign its token exchange by hand (steps 6, 7,
    15), as on a single lab; the agent's key is made on the laptop and never sent anywhere."""
    from lab.config import AGENT_PRINCIPAL, MCP_PRINCIPAL

    laptop = Settings(home=tmp_path / "laptop")
    room_join.apply_bundle(room_join.read_bundle(bundle_file), laptop)
    issued = load_private_key(bundle_file.parent / "keys" / f"{MCP_PRINCIPAL}.pem")
    mcp_key = laptop.key_file(MCP_PRINCIPAL)
    assert stat.S_IMODE(mcp_key.stat().st_mode) == 0o600
    assert key_id(load_private_key(mcp_key)) == key_id(issued)
    assert (laptop.keys_dir / f"{MCP_PRINCIPAL}.pub.pem").exists()
    agent = laptop.key_file(AGENT_PRINCIPAL)
    assert stat.S_IMODE(agent.stat().st_mode) == 0o600
    assert "ai.agent" not in json.dumps(room_join.read_bundle(bundle_file).get("service_keys"))
