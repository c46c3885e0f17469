"""``lab up``/``lab down`` with --dry-run, --context and --namespace (no Docker, no cluster)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

from lab.backends import BackendError, get_backend
from lab.config import PORTS, Settings
from tests.cli.conftest import Lab


@pytest.fixture
def no_daemons(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to run a program or reach Docker or a cluster fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError(f"a dry run touched the outside world: {args!r}")

    import docker
    import kubernetes.config

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)
    monkeypatch.setattr(docker, "DockerClient", refuse)
    monkeypatch.setattr(kubernetes.config, "new_client_from_config", refuse)
    monkeypatch.setattr(kubernetes.config, "load_kube_config", refuse)


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.usefixtures("no_daemons")
def test_kind_up_dry_run_prints_the_plan_and_touches_nothing(lab: Lab) -> None:
    result = lab.invoke("--backend", "kind", "up", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "# kind backend plan (context kind-idjag-lab, namespace idjag-lab)"
    )
    assert "kind create cluster --name idjag-lab" in result.stdout
    assert "Generate service keys" in result.stdout
    assert not (lab.home / "runtime.json").exists()
    assert not (lab.home / "kind-cluster.yaml").exists()


@pytest.mark.usefixtures("no_daemons")
def test_kind_up_dry_run_on_an_existing_context_uses_its_namespace(lab: Lab) -> None:
    result = lab.invoke(
        "--backend",
        "kind",
        "up",
        "--dry-run",
        "--context",
        "docker-desktop",
        "--namespace",
        "team-a",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "# kind backend plan (context docker-desktop, namespace team-a)"
    )
    assert "kind create cluster" not in result.stdout  # an existing cluster is used, not made
    assert "port-forward" in result.stdout


@pytest.mark.usefixtures("no_daemons")
def test_kind_up_dry_run_as_json_carries_the_plan(lab: Lab) -> None:
    result = lab.invoke("--backend", "kind", "up", "--dry-run", "--json", "--namespace", "ns-b")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["backend"], data["dry_run"]) == ("kind", True)
    assert data["plan"].startswith("# kind backend plan (context kind-idjag-lab, namespace ns-b)")


@pytest.mark.usefixtures("no_daemons")
def test_kind_down_dry_run_names_what_it_would_delete(lab: Lab) -> None:
    result = lab.invoke(
        "--backend", "kind", "down", "--dry-run", "--context", "ctx-x", "--namespace", "ns-y"
    )
    assert result.exit_code == 0, result.output
    assert "delete namespace ns-y (context ctx-x)" in result.stdout
    assert "docker rm -f idjag-lab-keycloak" in result.stdout
    assert "stopped" not in result.output


@pytest.mark.usefixtures("no_daemons")
def test_kind_down_dry_run_of_the_kind_cluster_shows_kind_delete(lab: Lab) -> None:
    result = lab.invoke("--backend", "kind", "down", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "kind delete cluster --name idjag-lab" in result.stdout


def test_embedded_up_dry_run_lists_parts_ports_and_home(lab: Lab) -> None:
    result = lab.invoke("up", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# embedded backend plan (dry run: nothing is started)")
    assert f"LAB_HOME: {lab.home.resolve()}" in result.stdout
    for part, (variable, _default) in PORTS.items():
        port = lab.env[variable]
        assert f"127.0.0.1:{port}" in result.stdout, part
        assert f"({variable})" in result.stdout
    assert "MCP server" in result.stdout
    assert not (lab.home / "runtime.json").exists()


def test_embedded_down_dry_run_says_nothing_runs(lab: Lab) -> None:
    result = lab.invoke("down", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "nothing runs" in result.stdout
    assert "stopped" not in result.output


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (("up", "--context", "docker-desktop"), "--context applies only to the kind backend"),
        (("down", "--namespace", "team-a"), "--namespace applies only to the kind backend"),
        (
            ("up", "--dry-run", "--context", "c", "--namespace", "n"),
            "--context and --namespace apply only to the kind backend",
        ),
    ],
)
def test_context_or_namespace_with_embedded_is_a_usage_error(
    lab: Lab, args: tuple[str, ...], sentence: str
) -> None:
    result = lab.invoke(*args)
    assert result.exit_code == 2
    assert sentence in one_line(result.output)
    assert "lab --backend kind up --context CTX" in one_line(result.output)
    assert not (lab.home / "runtime.json").exists()


def test_get_backend_passes_kind_options(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    chosen = get_backend("kind", settings, context="ctx-a", namespace="ns-a", dry_run=True)
    assert chosen.name == "kind"
    assert (chosen.context, chosen.namespace, chosen.dry_run) == ("ctx-a", "ns-a", True)  # type: ignore[attr-defined]
    assert chosen.creates_cluster is False  # type: ignore[attr-defined]


def test_get_backend_embedded_refuses_kind_options(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert get_backend("embedded", settings).name == "embedded"
    with pytest.raises(BackendError, match="the embedded backend takes no context, namespace"):
        get_backend("embedded", settings, context="c", namespace="n")
    with pytest.raises(BackendError, match="takes no dry_run"):
        get_backend("embedded", settings, dry_run=True)
