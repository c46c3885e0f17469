"""lab.backends.pod: what each lab pod runs — its part on its ports, and loopback forwarders."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab.backends import pod
from lab.config import Settings


def test_parse_forwards_reads_port_host_port_rules() -> None:
    rules = pod.parse_forwards("8443=lab-pdp:8443, 9090=idjag-lab-keycloak:8080,")
    assert rules == [
        pod.Forward(8443, "lab-pdp", 8443),
        pod.Forward(9090, "idjag-lab-keycloak", 8080),
    ]


def test_parse_forwards_names_the_variable_on_a_bad_rule() -> None:
    with pytest.raises(ValueError, match="LAB_POD_FORWARD: bad rule 'lab-pdp:8443'"):
        pod.parse_forwards("lab-pdp:8443")


def test_a_pod_never_forwards_its_own_ports() -> None:
    settings = Settings()
    rules = pod.parse_forwards("4443=lab-pdp:4443,8443=lab-pdp:8443,14443=lab-docapi:14443")
    assert [f.listen_port for f in pod.forwards_for("pdp", settings, rules)] == [14443]
    assert [f.listen_port for f in pod.forwards_for("docapi", settings, rules)] == [4443, 8443]


def test_install_keys_copies_secret_files_0600_and_skips_volume_internals(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "mcp.api-mcp.pem").write_bytes(b"private")
    (mount / "..data").mkdir()  # what a Secret volume holds beside the real names
    written = pod.install_keys(mount, tmp_path / "home" / "keys")
    assert [p.name for p in written] == ["mcp.api-mcp.pem"]
    assert written[0].read_bytes() == b"private"
    assert stat.S_IMODE(os.stat(written[0]).st_mode) == 0o600


def test_prepare_installs_providers_for_the_pdp_only(tmp_path: Path) -> None:
    providers = tmp_path / "providers.json"
    providers.write_text('[{"issuerUri": "http://127.0.0.1:9090/realms/idjag"}]')
    env = {pod.PROVIDERS_VARIABLE: str(providers), pod.FORWARD_VARIABLE: "9090=kc:8080"}
    pdp_settings = Settings(home=tmp_path / "pdp")
    forwards = pod.prepare("pdp", pdp_settings, env)
    assert pdp_settings.providers_file.read_text() == providers.read_text()
    assert forwards == [pod.Forward(9090, "kc", 8080)]
    docapi_settings = Settings(home=tmp_path / "docapi")
    pod.prepare("docapi", docapi_settings, env)
    assert not docapi_settings.providers_file.exists()


def test_unknown_part_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown part 'idp'"):
        pod.part_apps("idp", Settings())


class _Loop:
    """An asyncio loop in a thread, for running the pod's coroutines beside sync test code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: object, timeout: float = 10.0) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close_servers(self, servers: object) -> None:
        """Close asyncio servers on their own loop: ``Server.close`` is not thread-safe, and
        called from the test's thread it raced the loop's own wake-up (a TypeError in CI)."""

        async def close_all() -> None:
            for server in servers:  # type: ignore[attr-defined]
                server.close()

        self.run(close_all())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[_Loop]:
    runner = _Loop()
    try:
        yield runner
    finally:
        runner.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_forwarder_carries_http_to_the_target_service(
    loop: _Loop, lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: object
) -> None:
    docapi = pytest.importorskip("lab.docapi.app", reason="lab/docapi/app.py is not written yet")
    target_url = serve(
        docapi.create_app(lab_settings, protected=False), reserved_sockets["docapi_unprotected"]
    )  # type: ignore[operator]
    target_port = lab_settings.ports["docapi_unprotected"]
    listen = _free_port()
    servers = loop.run(pod.start_forwarders([pod.Forward(listen, "127.0.0.1", target_port)]))
    try:
        response = httpx.get(f"http://127.0.0.1:{listen}/api/docs", timeout=5)
        direct = httpx.get(f"{target_url}/api/docs", timeout=5)
    finally:
        loop.close_servers(servers)
    assert response.status_code == 200
    assert response.json() == direct.json()
    assert [d["id"] for d in response.json()["docs"]] == [1, 2]


def test_forwarder_closes_the_connection_when_the_service_is_down(loop: _Loop) -> None:
    listen = _free_port()
    # Bound but not listening: connections are refused and no other test can take the port
    # while the forwarder retries.
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        target = int(dead.getsockname()[1])
        servers = loop.run(pod.start_forwarders([pod.Forward(listen, "127.0.0.1", target)]))
        try:
            # A generous timeout: on a loaded machine the forwarder's retry can be slow to run;
            # a forwarder that hangs instead of closing still fails the test (ReadTimeout).
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(f"http://127.0.0.1:{listen}/healthz", timeout=30)
        finally:
            loop.close_servers(servers)


def test_docapi_pod_serves_both_faces_and_stops_cleanly(
    loop: _Loop, lab_settings: Settings, reserved_sockets: dict[str, socket.socket]
) -> None:
    pytest.importorskip("lab.docapi.app", reason="lab/docapi/app.py is not written yet")
    sockets = {name: reserved_sockets[name] for name in pod.PART_PORTS["docapi"]}
    apps = pod.part_apps("docapi", lab_settings)
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(
        pod.serve(apps, sockets, [], "warning", stop), loop.loop
    )
    try:
        endpoints = lab_settings.endpoints
        for base in (endpoints.docapi_protected, endpoints.docapi_unprotected):
            health = _get_when_up(f"{base}/healthz").json()
            assert (health["status"], health["part"]) == ("ok", "docapi")
        assert httpx.get(f"{endpoints.docapi_protected}/api/docs", timeout=5).status_code == 401
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        running.result(timeout=10)  # serve returns once both servers have shut down


def _get_when_up(url: str, process: object = None) -> httpx.Response:
    for _ in range(500):
        try:
            return httpx.get(url, timeout=5)
        except httpx.ConnectError:
            if process is not None and process.poll() is not None:  # type: ignore[attr-defined]
                break
            threading.Event().wait(0.02)
    raise AssertionError(f"{url} never answered")


def test_bind_part_binds_the_parts_ports(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket]
) -> None:
    for name in pod.PART_PORTS["pdp"]:
        reserved_sockets[name].close()
    sockets = pod.bind_part("pdp", lab_settings, host="127.0.0.1")
    try:
        assert {n: s.getsockname()[1] for n, s in sockets.items()} == {
            "zms": lab_settings.ports["zms"],
            "zts": lab_settings.ports["zts"],
        }
    finally:
        for sock in sockets.values():
            sock.close()


PART_MODULES = {"pdp": "lab.pdp.app", "docapi": "lab.docapi.app", "mcpserver": "lab.mcpserver.app"}


@pytest.mark.parametrize("part", sorted(pod.PART_PORTS))
def test_entry_point_serves_its_part_and_exits_0_on_sigterm(
    part: str, lab_settings: Settings, reserved_sockets: dict[str, socket.socket], tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from lab.backends import kind_plan
    from lab.backends.kind import ensure_local_keys

    pytest.importorskip(PART_MODULES[part], reason=f"{PART_MODULES[part]} is not written yet")
    # What the Secret volume of this part would hold, generated the way `lab up` does.
    local_keys, mount = tmp_path / "laptop-keys", tmp_path / "secret-mount"
    ensure_local_keys(local_keys)
    mount.mkdir()
    secret = {"pdp": "lab-pdp-keys", "docapi": "lab-docapi-keys", "mcpserver": "lab-mcpserver-keys"}
    for name in kind_plan.SECRET_KEYS[secret[part]]:
        (mount / name).write_bytes((local_keys / name).read_bytes())
    providers = tmp_path / "providers.json"
    providers.write_text("[]")
    for sock in reserved_sockets.values():
        sock.close()
    env = {
        **os.environ,
        "LAB_HOME": str(lab_settings.home),
        "LAB_POD_BIND": "127.0.0.1",  # tests bind loopback only; pods use 0.0.0.0
        "LAB_POD_KEYS": str(mount),
        "LAB_POD_PROVIDERS": str(providers),
        "LAB_POD_FORWARD": kind_plan.pod_forwards(lab_settings, "127.0.0.1:1"),
        "LAB_LOG_LEVEL": "warning",
    }
    for name, port in lab_settings.ports.items():
        env[lab_settings.port_variable(name)] = str(port)
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.backends.pod", part],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )
    try:
        for name in pod.PART_PORTS[part]:
            url = f"http://127.0.0.1:{lab_settings.ports[name]}/healthz"
            assert _get_when_up(url, process).status_code == 200
        for name in kind_plan.SECRET_KEYS[secret[part]]:
            installed = lab_settings.keys_dir / name
            assert installed.read_bytes() == (local_keys / name).read_bytes()
            assert stat.S_IMODE(os.stat(installed).st_mode) == 0o600
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]


def test_pdp_pod_keeps_the_learner_facing_issuer(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], loop: _Loop
) -> None:
    app_module = pytest.importorskip("lab.pdp.app", reason="lab/pdp/app.py is not written yet")
    del app_module
    sockets = {name: reserved_sockets[name] for name in pod.PART_PORTS["pdp"]}
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(
        pod.serve(pod.part_apps("pdp", lab_settings), sockets, [], "warning", stop), loop.loop
    )
    try:
        zts = lab_settings.endpoints.zts
        origin = zts.rsplit("/zts/v1", 1)[0]
        _get_when_up(f"{origin}/healthz")
        metadata = httpx.get(f"{origin}/.well-known/oauth-authorization-server/zts/v1", timeout=5)
        assert metadata.status_code == 200
        assert metadata.json()["issuer"] == zts  # http://127.0.0.1:<port>/zts/v1, not a pod IP
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        running.result(timeout=10)


def test_pdp_in_a_pod_trusts_the_admin_public_key_without_the_private_key(
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives import serialization

    from lab.config import ADMIN_PRINCIPAL, Settings
    from lab.oauth.jose import generate_private_key, key_id
    from lab.pdp.core import Pdp

    admin = generate_private_key("ES256")
    settings = Settings(home=tmp_path)
    settings.keys_dir.mkdir(parents=True)
    public_pem = admin.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (settings.keys_dir / f"{ADMIN_PRINCIPAL}.pub.pem").write_bytes(public_pem)
    pdp = Pdp.open(settings)
    assert key_id(pdp.admin_public) == key_id(admin)
    assert not settings.key_file(ADMIN_PRINCIPAL).exists()  # no admin private key made in the pod


def test_forwarder_retries_the_upstream_connect_once_while_a_part_restarts(loop: _Loop) -> None:
    """The PDP restarting behind a forward costs one short retry, not a refused call."""
    port = _free_port()

    async def start_late() -> asyncio.Server:
        await asyncio.sleep(0.1)  # the first attempt finds nothing listening yet
        return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

    async def scenario() -> bool:
        late = asyncio.create_task(start_late())
        _reader, writer = await pod.connect_upstream(
            pod.Forward(0, "127.0.0.1", port), attempts=2, timeout_s=1.0, pause_s=0.4
        )
        writer.close()
        server = await late
        server.close()
        return True

    assert loop.run(scenario()) is True


def test_forwarder_gives_up_after_its_attempts_when_the_part_stays_down(loop: _Loop) -> None:
    with socket.socket() as dead, pytest.raises(OSError):
        dead.bind(("127.0.0.1", 0))
        port = int(dead.getsockname()[1])
        loop.run(
            pod.connect_upstream(
                pod.Forward(0, "127.0.0.1", port), attempts=2, timeout_s=1.0, pause_s=0.05
            )
        )


class _HostRecorder:
    """A tiny HTTP server on 127.0.0.1 that records the Host header it was sent."""

    def __init__(self) -> None:
        import http.server

        hosts = self.hosts = []  # type: list[str]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's handler name
                hosts.append(self.headers["Host"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_pod_routes_the_learner_facing_host_to_its_own_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a room pod, http://<listen address>:<port> must reach the pod's forwarder on
    127.0.0.1:<port>, keeping the learner-facing Host (the host check and issuers name it)."""
    from lab.oauth import http as lab_http

    monkeypatch.setattr(lab_http, "_LOOPBACK_ALIASES", set())
    recorder = _HostRecorder()
    try:
        settings = Settings(home=tmp_path / "pod")
        pod.prepare("docapi", settings, {pod.LOOPBACK_HOST_VARIABLE: "192.0.2.10"})
        with lab_http.client(timeout=5) as http:
            response = http.get(f"http://192.0.2.10:{recorder.port}/healthz")
    finally:
        recorder.close()
    assert response.status_code == 200
    assert recorder.hosts == [f"192.0.2.10:{recorder.port}"]
    assert lab_http.loopback_aliases() == {"192.0.2.10"}


def test_hosts_that_are_not_aliased_are_not_rerouted(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.oauth import http as lab_http

    monkeypatch.setattr(lab_http, "_LOOPBACK_ALIASES", {"192.0.2.10"})
    request = httpx.Request("GET", "http://192.0.2.11:4443/zms/v1/domain")
    lab_http._to_loopback(request)
    assert request.url.host == "192.0.2.11"
