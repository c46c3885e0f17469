"""KindBackend without a daemon: doctor, status, failure cleanup; the real bring-up needs Docker."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.backends import versions
from lab.backends.base import BackendError, BackendNotRunning
from lab.backends.kind import (
    KindBackend,
    KindContext,
    Runner,
    check_cli,
    deployment_ready,
    docker_version_check,
    health_urls,
    kind_doctor,
    run_actions,
)
from lab.config import Settings


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means: no engine to test against
        return False
    return True


def missing(_name: str) -> None:
    return None


def test_doctor_reports_an_unreachable_engine_with_a_fix(no_docker: None) -> None:
    checks = {c.name: c for c in kind_doctor()}
    docker_check = checks["docker engine"]
    assert docker_check.ok is False
    assert docker_check.required is True
    assert "no Docker engine answers" in docker_check.detail
    assert docker_check.fix is not None and "embedded" in docker_check.fix


def test_doctor_says_how_to_install_missing_kind_and_kubectl(no_docker: None) -> None:
    checks = {c.name: c for c in kind_doctor(which=missing)}
    for name, version in (("kind", versions.KIND_VERSION), ("kubectl", versions.KUBECTL_VERSION)):
        check = checks[name]
        assert check.ok is False
        assert check.fix is not None
        assert version in check.fix
        assert "release binar" in check.fix and "package manager" in check.fix
        # Point to upstream releases and package managers, never to a registry's download host.
        assert not any(host in check.fix for host in ("http", "dl.k8s.io", "kind.sigs.k8s.io/dl"))


def test_doctor_prints_the_pinned_versions(no_docker: None) -> None:
    versions_check = next(
        c for c in kind_doctor(which=missing) if c.name == "kind backend versions"
    )
    assert versions_check.required is False
    assert versions.KEYCLOAK_IMAGE in versions_check.detail
    assert versions.KIND_NODE_IMAGE in versions_check.detail


def test_doctor_shows_the_installed_cli_version() -> None:
    def fake_run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 0, "kind v0.29.0 go1.24 linux/amd64\n", "")

    check = check_cli("kind", ["kind", "version"], lambda _n: "/usr/bin/kind", fake_run)
    assert check.ok is True
    assert check.detail == "kind v0.29.0 go1.24 linux/amd64"


def test_status_when_never_started_is_not_running(tmp_path: Path) -> None:
    status = KindBackend(Settings(home=tmp_path)).status()
    assert status.running is False
    assert status.healthy is False
    assert "lab --backend kind up" in status.detail


def test_endpoints_when_down_raise_backend_not_running(tmp_path: Path) -> None:
    with pytest.raises(BackendNotRunning) as caught:
        KindBackend(Settings(home=tmp_path)).endpoints()
    assert caught.value.fix == "start it with `lab --backend kind up`"


def test_providers_when_down_raise_backend_not_running(tmp_path: Path) -> None:
    with pytest.raises(BackendNotRunning):
        KindBackend(Settings(home=tmp_path)).set_providers([])


def _healthz_app(part: str) -> Starlette:
    async def healthz(_request: object) -> JSONResponse:
        return JSONResponse({"status": "ok", "part": part})

    async def discovery(_request: object) -> JSONResponse:
        return JSONResponse({"issuer": "x"})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/realms/idjag/.well-known/openid-configuration", discovery),
        ]
    )


def test_status_checks_every_recorded_endpoint_on_loopback(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
) -> None:
    # Stand-ins answer health on every port except the MCP server's: status must say which.
    for part, sock in reserved_sockets.items():
        if part != "mcp":
            serve(_healthz_app(part), sock)
    backend = KindBackend(lab_settings)
    lab_settings.runtime_file.write_text(json.dumps(backend.runtime_record("idjag-lab:t")))
    status = backend.status()
    assert status.running is True
    by_part = {p.name: p for p in status.parts}
    assert by_part["zts"].healthy is True
    assert by_part["idp"].healthy is True  # Keycloak: realm discovery, not /healthz
    assert by_part["mcp"].healthy is False
    assert status.healthy is False
    assert backend.endpoints() == lab_settings.endpoints


def test_backend_reuses_recorded_context_and_namespace(tmp_path: Path) -> None:
    first = KindBackend(Settings(home=tmp_path), context="ctx-a", namespace="ns-a")
    (tmp_path / "runtime.json").write_text(json.dumps(first.runtime_record("t")))
    again = KindBackend(Settings(home=tmp_path))
    assert (again.context, again.namespace, again.creates_cluster) == ("ctx-a", "ns-a", False)


def test_health_urls_use_discovery_for_keycloak_and_healthz_elsewhere() -> None:
    urls = health_urls(Settings().endpoints)
    assert urls["idp"] == "http://127.0.0.1:9090/realms/idjag/.well-known/openid-configuration"
    assert urls["zts"] == "http://127.0.0.1:8443/healthz"
    assert urls["mcp"] == "http://127.0.0.1:8101/healthz"


class _Step:
    def __init__(self, title: str, log: list[str], fail: bool = False) -> None:
        self.title, self.log, self.fail = title, log, fail

    def describe(self) -> str:
        return self.title

    def execute(self, ctx: KindContext) -> None:
        self.log.append(self.title)
        ctx.undo.append((self.title, lambda: self.log.append(f"undo {self.title}")))
        if self.fail:
            raise BackendError(f"{self.title} failed")


def _ctx(tmp_path: Path) -> KindContext:
    return KindContext(
        Settings(home=tmp_path), "kind-idjag-lab", "idjag-lab", True, lambda *a: None
    )


def test_failed_bring_up_undoes_what_it_created_in_reverse(tmp_path: Path) -> None:
    log: list[str] = []
    steps = [
        _Step("cluster", log),
        _Step("keycloak", log),
        _Step("apply", log, fail=True),
        _Step("never", log),
    ]
    with pytest.raises(BackendError, match="apply failed"):
        run_actions(steps, _ctx(tmp_path))
    assert log == ["cluster", "keycloak", "apply", "undo apply", "undo keycloak", "undo cluster"]


def test_failed_bring_up_keeps_everything_when_retained(tmp_path: Path) -> None:
    log: list[str] = []
    with pytest.raises(BackendError):
        run_actions(
            [_Step("cluster", log), _Step("apply", log, fail=True)], _ctx(tmp_path), retain=True
        )
    assert log == ["cluster", "apply"]


def _deployment(
    generation: int, observed: int, replicas: int, updated: int, available: int
) -> object:
    return SimpleNamespace(
        metadata=SimpleNamespace(generation=generation),
        spec=SimpleNamespace(replicas=1),
        status=SimpleNamespace(
            observed_generation=observed,
            replicas=replicas,
            updated_replicas=updated,
            available_replicas=available,
        ),
    )


@pytest.mark.parametrize(
    ("deployment", "ready"),
    [
        (_deployment(2, 2, 1, 1, 1), True),
        (_deployment(3, 2, 1, 1, 1), False),  # controller has not seen the new spec yet
        (_deployment(2, 2, 2, 1, 1), False),  # old pod still terminating
        (_deployment(2, 2, 1, 1, 0), False),  # new pod not ready
    ],
)
def test_deployment_ready_waits_for_the_new_spec_to_be_available(
    deployment: object, ready: bool
) -> None:
    assert deployment_ready(deployment) is ready


def test_up_without_kind_fails_with_an_install_fix(
    tmp_path: Path, no_docker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BackendError) as caught:
        KindBackend(Settings(home=tmp_path)).up()
    assert caught.value.message == "`kind` is not installed"
    assert caught.value.fix is not None and versions.KIND_VERSION in caught.value.fix
    assert (tmp_path / "keys" / "pdp-signing.pem").exists()  # the keys step ran first


@pytest.mark.docker
def test_doctor_sees_a_running_engine() -> None:
    if not docker_answers():
        pytest.skip("no Docker engine answers here (docker.from_env().ping() failed)")
    check = next(c for c in kind_doctor() if c.name == "docker engine")
    assert check.ok is True
    assert check.detail.startswith("Docker Engine ")


@pytest.mark.docker
@pytest.mark.slow
def test_full_bring_up_on_kind_serves_every_part(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket]
) -> None:
    if os.environ.get("LAB_TEST_KIND") != "1":
        pytest.skip(
            "set LAB_TEST_KIND=1 to create (and then delete) kind cluster idjag-lab from the tests"
        )
    if not docker_answers():
        pytest.skip("no Docker engine answers here (docker.from_env().ping() failed)")
    if shutil.which("kind") is None or shutil.which("kubectl") is None:
        pytest.skip("kind and kubectl must be installed for the real kind bring-up")
    for sock in reserved_sockets.values():
        sock.close()  # free ports (never the defaults) for kind and Keycloak to publish
    backend = KindBackend(lab_settings)
    try:
        endpoints = backend.up()
        status = backend.status()
        assert status.healthy, [p for p in status.parts if not p.healthy]
        assert endpoints.zts == f"http://127.0.0.1:{lab_settings.ports['zts']}/zts/v1"
    finally:
        backend.down()
    assert backend.status().running is False


def test_down_with_nothing_started_and_no_tools_is_a_no_op(
    tmp_path: Path, no_docker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    backend = KindBackend(Settings(home=tmp_path))
    backend.down()
    backend.down()  # twice, like rm -f
    assert backend.status().running is False


def test_down_after_an_up_without_kind_says_how_to_install_it(
    tmp_path: Path, no_docker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    backend = KindBackend(Settings(home=tmp_path))
    (tmp_path / "runtime.json").write_text(json.dumps(backend.runtime_record("t")))
    with pytest.raises(BackendError) as caught:
        backend.down()
    assert caught.value.message == "`kind` is not installed"
    assert (tmp_path / "runtime.json").exists()  # the record stays until the cluster is gone


def test_progress_names_the_running_action_until_a_part_is_healthy(tmp_path: Path) -> None:
    from lab.backends.kind import _PartProgress

    seen: list[tuple[str, str, str]] = []
    report = _PartProgress(lambda *event: seen.append(event))
    report.action_started(_Step("Start Keycloak", []))
    report("idp", "healthy", "http://127.0.0.1:9090/realms/idjag")
    seen.clear()
    report.action_started(_Step("Apply manifests", []))
    assert ("idp", "starting", "Apply manifests") not in seen
    assert ("zts", "starting", "Apply manifests") in seen


def _cli_reports(outputs: dict[str, str]) -> Runner:
    def fake_run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 0, outputs[argv[0]], "")

    return fake_run


def test_doctor_warns_when_kind_is_not_the_tested_release(no_docker: None) -> None:
    run = _cli_reports(
        {"kind": "kind v0.22.0 go1.21 linux/amd64\n", "kubectl": "Client Version: v1.33.1\n"}
    )
    checks = {c.name: c for c in kind_doctor(which=lambda n: f"/usr/bin/{n}", run=run)}
    assert checks["kind version"].ok is False
    assert checks["kind version"].required is False
    assert versions.KIND_VERSION in checks["kind version"].detail
    assert checks["kubectl version"].ok is True


def test_doctor_warns_when_kubectl_is_more_than_one_minor_away(no_docker: None) -> None:
    run = _cli_reports(
        {"kind": f"kind {versions.KIND_VERSION} go1.24\n", "kubectl": "Client Version: v1.29.4\n"}
    )
    checks = {c.name: c for c in kind_doctor(which=lambda n: f"/usr/bin/{n}", run=run)}
    assert checks["kind version"].ok is True
    assert checks["kubectl version"].ok is False
    assert checks["kubectl version"].fix is not None


def test_doctor_refuses_a_docker_engine_older_than_tested() -> None:
    assert docker_version_check("20.10.7").ok is False
    assert versions.DOCKER_MIN_VERSION in (docker_version_check("20.10.7").fix or "")
    assert docker_version_check("29.0.1").ok is True


def test_kind_node_image_is_pinned_by_the_release_digest() -> None:
    image = versions.KIND_NODE_IMAGE
    assert image.startswith(f"kindest/node:v{versions.KUBERNETES_VERSION}@sha256:")
    assert len(image.split("@sha256:")[1]) == 64


def test_docker_py_pin_excludes_7_0_which_newer_engines_refuse() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "docker>=7.1,<8" in pyproject["project"]["dependencies"]
