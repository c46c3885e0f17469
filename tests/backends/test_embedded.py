"""The embedded backend: one background process, every part healthy, idempotent, clear failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lab.backends import get_backend
from lab.backends.base import PART_NAMES, BackendError, BackendNotRunning
from lab.backends.embedded import EmbeddedBackend
from lab.backends.embedded.health import probe_part
from lab.backends.embedded.process import process_alive
from lab.backends.embedded.runtime import FACTORIES, LAB_KEYS, build_apps
from lab.backends.embedded.runtime_file import read_runtime
from lab.config import Settings
from tests.stack import free_ports


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[EmbeddedBackend]:
    settings = replace(Settings(), home=tmp_path / "home", ports=free_ports(), policy_refresh_s=0.0)
    chosen = EmbeddedBackend(settings)
    yield chosen
    chosen.down()


def test_get_backend_returns_the_embedded_backend_by_default(tmp_path: Path) -> None:
    chosen = get_backend(None, replace(Settings(), home=tmp_path))
    assert isinstance(chosen, EmbeddedBackend)
    assert chosen.name == "embedded"


def test_get_backend_rejects_an_unknown_name_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as caught:
        get_backend("docker", replace(Settings(), home=tmp_path))
    assert caught.value.message == "unknown backend 'docker'"
    assert "embedded, kind" in (caught.value.fix or "")


def test_up_starts_every_part_healthy_in_one_process(backend: EmbeddedBackend) -> None:
    endpoints = backend.up()

    status = backend.status()
    assert status.running and status.healthy, status
    assert [p.name for p in status.parts] == list(PART_NAMES)
    runtime = read_runtime(backend.settings)
    assert runtime is not None
    assert runtime["backend"] == "embedded"
    assert runtime["endpoints"] == endpoints.as_dict()
    assert status.pid == runtime["pid"]
    assert endpoints.zts == f"http://127.0.0.1:{backend.settings.ports['zts']}/zts/v1"


def test_up_creates_the_lab_keys_private(backend: EmbeddedBackend) -> None:
    backend.up()
    for principal in LAB_KEYS:
        path = backend.settings.key_file(principal)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, principal


def test_up_twice_keeps_the_running_lab(backend: EmbeddedBackend) -> None:
    first = backend.up()
    pid = backend.status().pid
    second = backend.up()
    assert second == first
    assert backend.status().pid == pid


def test_down_stops_the_process_and_is_idempotent(backend: EmbeddedBackend) -> None:
    backend.up()
    pid = backend.status().pid
    backend.down()
    assert not process_alive(pid)
    assert read_runtime(backend.settings) is None
    assert backend.status().running is False
    backend.down()  # like rm -f: nothing to stop is fine
    with pytest.raises(BackendNotRunning) as caught:
        backend.endpoints()
    assert caught.value.fix == "start it with `lab up`"


def test_a_busy_port_names_the_port_and_the_variable_that_moves_it(
    backend: EmbeddedBackend,
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", backend.settings.ports["zts"]))
    holder.listen()
    try:
        with pytest.raises(BackendError) as caught:
            backend.up()
    finally:
        holder.close()
    port = backend.settings.ports["zts"]
    assert caught.value.message == f"port {port} on 127.0.0.1 is already in use"
    assert "LAB_ZTS_PORT" in (caught.value.fix or "")
    assert read_runtime(backend.settings) is None  # nothing half-started


def test_a_crashed_runtime_is_reported_and_up_recovers(backend: EmbeddedBackend) -> None:
    backend.up()
    pid = backend.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: not process_alive(pid))

    status = backend.status()
    assert status.running is False
    assert f"the runtime process {pid} has exited" in status.detail
    assert all(not part.healthy for part in status.parts)

    backend.up()  # a stale runtime file does not block a fresh start
    assert backend.status().healthy


def test_providers_round_trip_through_the_file_and_the_pdp(backend: EmbeddedBackend) -> None:
    endpoints = backend.up()
    providers = [
        {
            "issuerUri": endpoints.idp_issuer,
            "jwksUri": endpoints.idp_jwks,
            "principalTemplate": "human.{preferred_username}",
        }
    ]
    backend.set_providers(providers)
    assert backend.get_providers() == providers
    assert json.loads(backend.settings.providers_file.read_text()) == providers
    backend.set_providers([])
    assert backend.get_providers() == []


def test_logs_are_collected_per_part(backend: EmbeddedBackend, tmp_path: Path) -> None:
    backend.up()
    assert backend.log_file("zts") == backend.log_file("pdp")
    assert backend.log_file("mcp").name == "mcpserver.log"
    copied = backend.collect_logs(tmp_path / "collected")
    assert tmp_path / "collected" / "embedded.log" in copied


def test_the_runtime_freezes_its_start_up_heap_once_every_part_is_built(
    backend: EmbeddedBackend,
) -> None:
    # The MCP server is built in the background after `up` returns: the freeze waits for it,
    # so its SDK's models are left out of the collector's passes too (issue #21).
    backend.up()
    log = backend.log_file("embedded")
    deadline = time.monotonic() + 60
    while "built mcp in the background" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    while "start-up heap frozen" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    lines = log.read_text().splitlines()
    built = next(i for i, line in enumerate(lines) if "built mcp in the background" in line)
    frozen = [i for i, line in enumerate(lines) if "start-up heap frozen" in line]
    assert len(frozen) == 1 and frozen[0] > built
    assert int(lines[frozen[0]].split("frozen: ")[1].split()[0]) > 10_000


def test_build_apps_runs_when_built_after_the_deferred_part_only(
    lab_settings: Settings,
) -> None:
    calls: list[str] = []
    apps = build_apps(lab_settings, deferred=("mcp",), when_built=lambda: calls.append("all"))
    assert calls == []  # the MCP server is still to be built (0.5 s from now)
    deferred = apps["mcp"]
    deferred.start_building()
    deferred._thread.join(60)
    assert deferred.app is not None
    assert calls == ["all"]


def test_build_apps_runs_when_built_at_once_when_nothing_is_deferred(
    lab_settings: Settings,
) -> None:
    calls: list[str] = []
    build_apps(lab_settings, when_built=lambda: calls.append("all"))
    assert calls == ["all"]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging sets up the process's logging (the runtime's): put it back after."""
    import logging

    from lab.backends.embedded.logs import LOGGERS

    names = ["", "httpx", *(n for names in LOGGERS.values() for n in names)]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, list(logger.handlers), logger.propagate)
    yield
    for name, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


@pytest.mark.usefixtures("restored_logging")
def test_the_runtime_logs_no_httpx_request_lines_at_info(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from lab.backends.embedded.logs import configure_logging

    configure_logging(replace(Settings(), home=tmp_path, log_level="info"))
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/x")
    logging.getLogger("httpx").warning("a library warning still shows")
    logging.getLogger("lab.embedded").info("the runtime's own line")
    embedded_log = capsys.readouterr().err  # the runtime's stderr is embedded.log
    assert "HTTP Request" not in embedded_log
    assert "WARNING httpx: a library warning still shows" in embedded_log
    assert "INFO lab.embedded: the runtime's own line" in embedded_log
    assert logging.getLogger("lab.pdp").isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("restored_logging")
def test_the_runtime_logs_httpx_request_lines_at_debug(tmp_path: Path) -> None:
    import logging

    from lab.backends.embedded.logs import configure_logging

    configure_logging(replace(Settings(), home=tmp_path, log_level="debug"))
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)


def test_an_unknown_log_name_lists_the_choices(backend: EmbeddedBackend) -> None:
    with pytest.raises(BackendError) as caught:
        backend.log_file("kafka")
    assert caught.value.message == "there is no part called 'kafka'"
    assert "idp" in (caught.value.fix or "")


def test_a_part_that_fails_to_build_answers_unhealthy_with_its_error(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(settings: Settings) -> object:
        raise ImportError("No module named 'lab.idp.app'")

    monkeypatch.setitem(FACTORIES, "idp", broken)
    apps = build_apps(lab_settings)  # the other parts still build
    url = serve(apps["idp"], reserved_sockets["idp"])

    status = probe_part("idp", f"{url}/healthz")

    assert status.healthy is False
    assert status.detail == "unavailable: ImportError: No module named 'lab.idp.app'"


def test_doctor_flags_a_busy_port_with_its_variable(backend: EmbeddedBackend) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", backend.settings.ports["mcp"]))
    holder.listen()
    try:
        checks = {c.name: c for c in backend.doctor()}
    finally:
        holder.close()
    busy = checks[f"port {backend.settings.ports['mcp']} (mcp)"]
    assert busy.ok is False
    assert busy.fix == "set LAB_MCP_PORT to a free port"
    assert checks["python >= 3.11"].ok


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
