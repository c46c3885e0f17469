"""The room status feed and the instructor's commands, offline: a learner's passed step lands in
their progress ConfigMap through their own kubeconfig; `lab room status` shows it; `lab room
reset N` touches learner N only; `lab room down` removes what the room made. The kube API is a
fake holding the kubernetes client's own objects."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from typer.testing import CliRunner

from lab.backends import kind, room, room_join, room_plan
from lab.backends.kind import KindBackend, ensure_local_keys
from lab.cli import engine
from lab.cli.room import room_app, status_table
from lab.config import Settings

LABELS = {"app.kubernetes.io/part-of": "idjag-lab"}


class FakeCore:
    """The CoreV1Api calls the room uses, over namespaces and ConfigMaps held in memory."""

    def __init__(self, learners: int) -> None:
        self.namespaces = [
            k8s.V1Namespace(
                metadata=k8s.V1ObjectMeta(name=ns, labels=dict(LABELS)),
                status=k8s.V1NamespaceStatus(phase="Active"),
            )
            for ns in [room.ROOM_NAMESPACE, *(p.namespace for p in room.learners(learners))]
        ]
        self.maps = {
            p.namespace: k8s.V1ConfigMap(
                metadata=k8s.V1ObjectMeta(
                    name=room_plan.PROGRESS_CONFIGMAP, namespace=p.namespace, labels=dict(LABELS)
                ),
                data=None,
            )
            for p in room.learners(learners)
        }
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def list_namespace(self, label_selector: str) -> k8s.V1NamespaceList:
        assert label_selector == "app.kubernetes.io/part-of=idjag-lab"
        return k8s.V1NamespaceList(items=list(self.namespaces))

    def list_config_map_for_all_namespaces(
        self, field_selector: str, label_selector: str
    ) -> k8s.V1ConfigMapList:
        assert field_selector == f"metadata.name={room_plan.PROGRESS_CONFIGMAP}"
        return k8s.V1ConfigMapList(items=list(self.maps.values()))

    def read_namespaced_config_map(self, name: str, namespace: str) -> k8s.V1ConfigMap:
        assert name == room_plan.PROGRESS_CONFIGMAP
        return self.maps[namespace]

    def patch_namespaced_config_map(self, name: str, namespace: str, body: Any) -> None:
        self.patches.append((name, namespace, body))
        current = self.maps[namespace]
        current.data = {**(current.data or {}), **body["data"]}


def test_a_learners_passed_steps_show_as_last_and_highest_in_the_status() -> None:
    core = FakeCore(3)
    room.record_verified_step(core, "idjag-learner-02", 9, "pdp-trusts-idp", now=0.0)
    room.record_verified_step(core, "idjag-learner-02", 12, "agent-gets-id-jag", now=60.0)
    room.record_verified_step(core, "idjag-learner-02", 4, "redo-after-reset", now=120.0)
    rows = {row["learner"]: row for row in room.status_rows(core)}
    assert list(rows) == ["learner-01", "learner-02", "learner-03"]  # not the room namespace
    second = rows["learner-02"]
    assert (second["last_verified_step"], second["last_verified_slug"]) == (4, "redo-after-reset")
    assert second["highest_verified_step"] == 12
    assert second["verified_at"] == "1970-01-01T00:02:00Z"
    assert rows["learner-01"]["last_verified_step"] is None  # nothing verified yet
    assert {ns for _name, ns, _body in core.patches} == {"idjag-learner-02"}


def test_status_table_renders_each_learners_progress() -> None:
    from rich.console import Console

    core = FakeCore(2)
    room.record_verified_step(core, "idjag-learner-01", 7, "zms-roles", now=0.0)
    console = Console(width=140, record=True)
    console.print(status_table(room.status_rows(core)))
    text = console.export_text()
    lines = {line.split()[1]: line for line in text.splitlines() if "learner-0" in line}
    assert "7 zms-roles" in lines["learner-01"] and "1970-01-01T00:00:00Z" in lines["learner-01"]
    assert "—" in lines["learner-02"]


def test_cli_room_status_json_lists_what_the_feed_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    core = FakeCore(2)
    room.record_verified_step(core, "idjag-learner-01", 15, "verify", now=0.0)
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    monkeypatch.setattr(room, "kube_api_client", lambda context: object())
    monkeypatch.setattr(k8s, "CoreV1Api", lambda api: core)
    result = CliRunner().invoke(room_app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["learner"], r["last_verified_step"]) for r in rows] == [
        ("learner-01", 15),
        ("learner-02", None),
    ]


# ------------------------------------------------------------------ the learner's side


@pytest.fixture
def joined(tmp_path: Path) -> Settings:
    """A learner's laptop after `lab room join` of a bundle that carries their kubeconfig."""
    instructor = Settings.from_env({"LAB_HOME": str(tmp_path / "i"), "LAB_HOST": "192.0.2.50"})
    workshop = room.Room(instructor, context="workshop")
    learner = room.Learner(2)
    keys = replace(workshop.settings, home=workshop.learner_home(learner))
    ensure_local_keys(keys.keys_dir)
    access = room.kubeconfig_document(
        server="https://192.0.2.50:19443",
        ca_data="Q0E=",
        token="learner-02-token",
        namespace=learner.namespace,
        context="workshop",
    )
    path = workshop.write_join_bundle(learner, access)
    laptop = Settings(home=tmp_path / "laptop")
    room_join.apply_bundle(room_join.read_bundle(path), laptop)
    return laptop


def test_join_keeps_the_learners_namespaced_kubeconfig_private(joined: Settings) -> None:
    runtime = json.loads(joined.runtime_file.read_text())
    path = Path(runtime["kubeconfig"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["contexts"][0]["context"]["namespace"] == "idjag-learner-02"
    assert config["users"][0]["user"] == {"token": "learner-02-token"}


def test_a_joined_learners_backend_talks_to_the_api_with_their_own_token(
    joined: Settings,
) -> None:
    backend = KindBackend(joined)
    api = backend._api()
    assert api.configuration.host == "https://192.0.2.50:19443"
    assert api.configuration.api_key == {"BearerToken": "Bearer learner-02-token"}


def test_a_joined_learners_passed_step_feeds_their_progress_configmap(
    joined: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = FakeCore(3)
    monkeypatch.setattr(k8s, "CoreV1Api", lambda api: core)
    backend = KindBackend(joined)
    assert backend.record_verified_step(10, "pdp-trusts-keycloak") is True
    assert core.patches[0][:2] == (room_plan.PROGRESS_CONFIGMAP, "idjag-learner-02")
    row = next(r for r in room.status_rows(core) if r["learner"] == "learner-02")
    assert row["last_verified_step"] == 10


def test_a_lab_outside_a_room_records_no_progress(tmp_path: Path) -> None:
    assert KindBackend(Settings(home=tmp_path)).record_verified_step(3, "x") is False


class _Step:
    number, slug = 5, "five"


def test_a_failed_status_update_warns_but_never_fails_the_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Unreachable:
        def record_verified_step(self, number: int, slug: str) -> bool:
            raise kind.BackendError("the room's API server does not answer")

    engine.report_to_room(Unreachable(), _Step())  # type: ignore[arg-type]
    assert "step 5 passed but the room status was not updated" in capsys.readouterr().err


def test_leaving_the_room_never_deletes_the_learners_namespace(
    joined: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleted: list[str] = []
    monkeypatch.setattr(kind, "delete_namespace", lambda api, ns: deleted.append(ns))
    KindBackend(joined).down()
    assert deleted == []
    assert not joined.runtime_file.exists()
    assert not (joined.home / room_join.KUBECONFIG_FILE).exists()


# ------------------------------------------------------------------ reset one, down


def test_reset_of_one_learner_recreates_only_their_namespace_and_rewrites_their_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workshop = room.Room(Settings(home=tmp_path), context="workshop")
    deleted, applied = [], []
    monkeypatch.setattr(room, "kube_api_client", lambda context: object())
    monkeypatch.setattr(room.Room, "_deployed_image", lambda self, api, people: "idjag-lab:t")
    monkeypatch.setattr(room, "delete_namespace", lambda api, ns: deleted.append(ns))
    monkeypatch.setattr(room, "wait_namespace_gone", lambda api, ns: None)

    def run_actions(actions: list[Any], ctx: Any, retain: bool = False) -> None:
        for action in actions:
            if isinstance(action, room.ApplyLearner):
                applied.append((action.learner.namespace, action.image))
            elif isinstance(action, kind.EnsureKeys):
                action.execute(ctx)

    monkeypatch.setattr(room, "run_actions", run_actions)
    monkeypatch.setattr(
        room,
        "learner_kubeconfig",
        lambda api, context, ns: room.kubeconfig_document("https://s", "Q0E=", "new", ns, context),
    )
    assert workshop.reset(room.Learner(2)) == ["idjag-learner-02"]
    assert deleted == ["idjag-learner-02"]
    assert applied == [("idjag-learner-02", "idjag-lab:t")]  # no rebuild, same image
    bundle = json.loads(workshop.join_bundle_path(room.Learner(2)).read_text())
    assert bundle["kubeconfig"]["users"][0]["user"]["token"] == "new"
    assert not workshop.join_bundle_path(room.Learner(1)).exists()


def test_down_dry_run_of_a_kind_room_deletes_the_cluster_it_made(tmp_path: Path) -> None:
    steps = room.Room(Settings(home=tmp_path), dry_run=True).down()
    assert "$ kind delete cluster --name idjag-lab" in steps
    assert any("port-forward supervisor" in s for s in steps)


def test_down_on_an_existing_context_deletes_only_the_rooms_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workshop = room.Room(Settings(home=tmp_path), context="workshop")
    workshop.write_record(2)
    (workshop.room_dir / "forwards.json").write_text("[]")
    deleted: list[str] = []
    monkeypatch.setattr(room, "kube_api_client", lambda context: object())
    monkeypatch.setattr(room, "delete_namespace", lambda api, ns: deleted.append(ns))
    monkeypatch.setattr(k8s, "CoreV1Api", lambda api: FakeCore(2))
    removed = workshop.down()
    assert deleted == ["idjag-learner-01", "idjag-learner-02", "idjag-room"] == removed
    assert not (workshop.room_dir / room.ROOM_RECORD).exists()
    assert not (workshop.room_dir / "forwards.json").exists()


def test_cli_room_down_dry_run_prints_what_it_would_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    result = CliRunner().invoke(room_app, ["down", "--context", "workshop", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "delete namespaces idjag-learner-NN" in result.output
    assert "the cluster stays" in result.output


def test_cli_room_up_names_each_learners_realm_urls_and_bundle_and_keeps_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    ran: list[str] = []
    monkeypatch.setattr(
        room, "run_actions", lambda actions, ctx, retain: ran.extend(a.title for a in actions)
    )
    monkeypatch.setattr(kind, "kube_api_client", lambda context: object())
    monkeypatch.setattr(room, "learner_kubeconfig", lambda api, context, ns: {})
    monkeypatch.setattr(
        room.Room, "write_join_bundle", lambda self, learner, access: Path(f"/b/{learner.name}")
    )
    result = CliRunner().invoke(
        room_app, ["up", "--learners", "2", "--listen", "192.0.2.50", "--context", "workshop"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "realm idjag-02, sign in as idjag-learner / password" in text
    assert "parts at http://192.0.2.50:20020-20024" in text
    assert "join bundle: /b/learner-02" in text
    assert "kubectl" not in text  # the forwards run already; nothing to run by hand
    assert ran[-1].startswith("Forward every learner's ports")
    record = json.loads((tmp_path / "room" / room.ROOM_RECORD).read_text())
    assert record == {
        "listen": "192.0.2.50",
        "context": "workshop",
        "created_cluster": False,
        "learners": 2,
    }
