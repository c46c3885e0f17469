"""The embedded backend: every part of the lab in one local background process.

``lab up`` binds every port in the CLI process first (so a busy port is reported at once, naming
the ``LAB_*_PORT`` variable that moves it), then starts ``python -m lab.backends.embedded`` with
those listening sockets inherited. That process serves each part with its own uvicorn server,
all in one event loop (the PDP app on both the ZMS and the ZTS socket), and logs to
``$LAB_HOME/logs``. A part whose module is missing or fails to build is served by a stand-in that
answers ``/healthz`` with 503 and the error, so ``lab status`` names the broken part instead of
the whole lab failing to start.

The CLI process never imports a part: imports stay light so ``lab up`` is healthy in about a second.

With ``LAB_IDP=keycloak`` (``lab up --idp keycloak``) the IdP port is served by real Keycloak, a
second process run by :mod:`lab.backends.keycloak_process`; the runtime serves the other parts.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.backends.base import (
    PART_NAMES,
    BackendError,
    BackendNotRunning,
    BackendStatus,
    DoctorCheck,
    PartStatus,
    Progress,
)
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, MCP_PRINCIPAL, PORTS, Endpoints, Settings

if TYPE_CHECKING:
    import socket

    from starlette.applications import Starlette

#: Keys the backend makes sure exist before any part starts (contracts §1).
LAB_KEYS: tuple[str, ...] = (ADMIN_PRINCIPAL, MCP_PRINCIPAL, AGENT_PRINCIPAL)
#: Environment variable carrying ``{part: fd}`` of the inherited listening sockets.
FDS_VARIABLE = "LAB_EMBEDDED_FDS"
#: How long ``up`` waits for every part to answer ``/healthz``.
UP_TIMEOUT_S = 20.0
DOWN_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 1.0
#: Log files under ``$LAB_HOME/logs``: one per part room, plus the runtime's own.
LOG_FILES: dict[str, str] = {
    "embedded": "embedded.log",
    "idp": "idp.log",
    "pdp": "pdp.log",
    "docapi": "docapi.log",
    "mcpserver": "mcpserver.log",
}
#: Real Keycloak's console output (``lab logs idp`` when ``LAB_IDP=keycloak``).
KEYCLOAK_LOG = "keycloak.log"
#: Which log file each part (and a few friendly aliases) writes to.
LOG_ALIASES: dict[str, str] = {
    "zms": "pdp",
    "zts": "pdp",
    "docapi_protected": "docapi",
    "docapi_unprotected": "docapi",
    "mcp": "mcpserver",
}
#: Logger names each log file collects (``logging.getLogger("lab.<part>")``, contracts §0).
LOGGERS: dict[str, tuple[str, ...]] = {
    "idp": ("lab.idp",),
    "pdp": ("lab.pdp", "lab.policy"),
    "docapi": ("lab.docapi",),
    "mcpserver": ("lab.mcpserver", "mcp"),
}


class EmbeddedBackend:
    """Runs the parts in one background process on 127.0.0.1 (contracts §9)."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = replace(settings, home=settings.home.resolve())

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Endpoints:
        """Start the runtime process unless it runs; return at once (``up`` waits for health)."""
        runtime = read_runtime(self.settings)
        if runtime is not None and process_alive(runtime.get("pid")):
            running_idp = runtime.get("idp", "embedded")
            if running_idp != self.settings.idp:
                raise BackendError(
                    f"the lab is already running with the {running_idp} IdP",
                    f"stop it with `lab down`, then `lab up --idp {self.settings.idp}`",
                )
            return Endpoints.from_dict(runtime["endpoints"])
        if runtime is not None:
            wait_until_gone(runtime.get("pid"))
        clear_runtime(self.settings)
        previous = os.umask(0o077)  # runtime.json, logs: owner-only, like the rest of $LAB_HOME
        try:
            preflight(self.settings)
            return self._start_process(after_crash=runtime is not None)
        finally:
            os.umask(previous)

    def up(self, progress: Progress | None = None) -> Endpoints:
        """Start the runtime unless it already runs; return once every part is healthy.

        The lab keys are made by the runtime before any part starts (see :func:`main`), so this
        process stays light: ``lab up`` is mostly the runtime's own start-up.
        """
        if self.settings.idp == "keycloak" and read_runtime(self.settings) is None:
            # Before anything starts: Java, and the IdP port Keycloak will bind itself (it would
            # only say "Port(s) already bound" deep in its own log).
            from lab.backends.keycloak_process import find_java

            find_java()
            if self.settings.ports["idp"]:
                variable = self.settings.port_variable("idp")
                _listen(self.settings.host, self.settings.ports["idp"], variable).close()
        endpoints = self.start()
        if self.settings.idp == "keycloak":
            self._start_keycloak(progress)
        self._wait_healthy(endpoints, progress)
        return endpoints

    def down(self) -> None:
        """Stop the runtime process if there is one. Idempotent, like ``rm -f``."""
        runtime = read_runtime(self.settings)
        if runtime is None:
            return
        pid = runtime.get("pid")
        if isinstance(pid, int) and process_alive(pid):
            stop_process(pid)
        keycloak = runtime.get("keycloak")
        if isinstance(keycloak, dict) and isinstance(keycloak.get("pid"), int):
            from lab.backends.keycloak_process import stop_keycloak

            stop_keycloak(keycloak["pid"], Path(keycloak["home"]))
        clear_runtime(self.settings)

    def status(self) -> BackendStatus:
        runtime = read_runtime(self.settings)
        if runtime is None:
            return BackendStatus(self.name, running=False, detail="not started")
        pid = runtime.get("pid")
        endpoints = Endpoints.from_dict(runtime["endpoints"])
        idp = runtime.get("idp", "embedded")
        if not process_alive(pid):
            detail = f"the runtime process {pid} has exited; see `lab logs embedded`"
            parts = tuple(
                PartStatus(name, url, False, "process exited")
                for name, url in health_urls(endpoints, idp).items()
            )
            return BackendStatus(self.name, running=False, parts=parts, detail=detail, pid=pid)
        parts = check_parts(endpoints, idp)
        detail = ""
        keycloak = runtime.get("keycloak")
        if isinstance(keycloak, dict):
            from lab.backends.keycloak_process import is_keycloak_process

            alive = is_keycloak_process(keycloak.get("pid"), Path(str(keycloak.get("home"))))
            detail = (
                f"IdP: {keycloak.get('version') or 'real Keycloak'}, pid {keycloak.get('pid')}"
                + ("" if alive else " (exited; see `lab logs idp`, then `lab down` and `lab up`)")
            )
        return BackendStatus(self.name, running=True, parts=parts, detail=detail, pid=pid)

    def endpoints(self) -> Endpoints:
        runtime = read_runtime(self.settings)
        if runtime is None or not process_alive(runtime.get("pid")):
            raise BackendNotRunning(self.name)
        return Endpoints.from_dict(runtime["endpoints"])

    def collect_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        copied: list[Path] = []
        for name in (*LOG_FILES.values(), KEYCLOAK_LOG):
            source = self.settings.logs_dir / name
            if source.exists():
                copied.append(Path(shutil.copy2(source, dest / name)))
        return copied

    def log_file(self, part: str) -> Path:
        """A part's log file: idp, pdp (zms, zts), docapi, mcp or embedded."""
        room = LOG_ALIASES.get(part, part)
        if room in ("idp", "keycloak") and (
            room == "keycloak" or (read_runtime(self.settings) or {}).get("idp") == "keycloak"
        ):
            return self.settings.logs_dir / KEYCLOAK_LOG
        if room not in LOG_FILES:
            choices = ", ".join(sorted({*LOG_FILES, *LOG_ALIASES, "keycloak"}))
            raise BackendError(f"there is no part called {part!r}", f"choose one of: {choices}")
        return self.settings.logs_dir / LOG_FILES[room]

    def doctor(self) -> list[DoctorCheck]:
        return embedded_doctor(self.settings) + keycloak_doctor(self.settings)

    # ------------------------------------------------------------------ providers

    def get_providers(self) -> list[dict[str, Any]]:
        from lab.homefiles import HomeFileError, read_providers_file

        try:
            return read_providers_file(self.settings.providers_file)
        except HomeFileError as exc:
            raise BackendError(str(exc), exc.fix) from None

    def set_providers(self, providers: list[dict[str, Any]]) -> None:
        """Write the providers file and ask the running PDP to re-read it (contracts §3)."""
        path = self.settings.providers_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(providers, indent=2))
        tmp.replace(path)
        endpoints = self.endpoints()
        reload_providers(self.settings, endpoints)

    # ------------------------------------------------------------------ internals

    def _start_keycloak(self, progress: Progress | None) -> None:
        """Run real Keycloak on the IdP port unless it already runs; wait until it answers.

        Java is looked for first, so a missing JDK fails before a long download.
        """
        from lab.backends import keycloak_process as kc

        report = progress or (lambda part, state, detail: None)
        runtime = read_runtime(self.settings) or {}
        recorded = runtime.get("keycloak")
        settings = replace(self.settings, ports={**self.settings.ports, **runtime.get("ports", {})})
        realm_file = project_root() / "keycloak" / "realm-idjag.json"
        process = kc.KeycloakProcess(settings, realm_file)
        if isinstance(recorded, dict) and kc.is_keycloak_process(recorded.get("pid"), process.home):
            pid = int(recorded["pid"])
        else:
            report("idp", "starting", "looking for Java 21+")
            java = kc.find_java()  # before the download: a missing Java fails at once
            process.prepare(lambda detail: report("idp", "starting", detail))
            # Keycloak would say "Port(s) already bound" deep in its log; say it here instead.
            _listen(settings.host, process.port, settings.port_variable("idp")).close()
            pid = process.spawn(java)
            record_keycloak(settings, pid, process.home, java.describe())
        try:
            process.wait_ready(pid, lambda detail: report("idp", "starting", detail))
        except BackendError:
            report("idp", "failed", "Keycloak did not start")
            raise
        record_keycloak(settings, pid, process.home, None, kc.server_identity(process.base_url))

    def _start_process(self, after_crash: bool = False) -> Endpoints:
        sockets = (
            _bind_after_crash(self.settings) if after_crash else bind_part_sockets(self.settings)
        )
        try:
            ports = {**self.settings.ports, **{n: s.getsockname()[1] for n, s in sockets.items()}}
            if self.settings.idp == "keycloak" and not ports["idp"]:
                ports["idp"] = free_port(self.settings.host)  # Keycloak needs a number up front
            settings = replace(self.settings, ports=ports)
            pid = spawn_runtime(settings, {name: s.fileno() for name, s in sockets.items()})
        finally:
            # The child holds its own copies of the listening sockets now.
            for sock in sockets.values():
                sock.close()
        endpoints = settings.endpoints
        write_runtime(settings, pid, endpoints)
        return endpoints

    def _wait_healthy(self, endpoints: Endpoints, progress: Progress | None) -> None:
        report = progress or (lambda part, state, detail: None)
        pending = health_urls(endpoints, self.settings.idp)
        for name in pending:
            report(name, "starting", "")
        pid = (read_runtime(self.settings) or {}).get("pid")
        deadline = time.monotonic() + UP_TIMEOUT_S
        last: dict[str, PartStatus] = {}
        while pending:
            for name, url in list(pending.items()):
                last[name] = status = probe_part(name, url)
                # A stand-in's "unavailable" means the part failed to build: it will not recover.
                if status.healthy or status.detail.startswith("unavailable:"):
                    report(name, "healthy" if status.healthy else "failed", status.detail)
                    del pending[name]
            if not pending:
                break
            self._raise_if_stuck(pid, deadline, pending, last, report)
            time.sleep(0.01)
        broken = [s for s in last.values() if not s.healthy]
        if broken:
            lines = "; ".join(f"{s.name}: {s.detail}" for s in broken)
            raise BackendError(
                f"the lab started but some parts are broken ({lines})",
                "see `lab status` and `lab logs PART`; `lab down` stops the rest",
            )

    def _raise_if_stuck(
        self,
        pid: object,
        deadline: float,
        pending: Mapping[str, str],
        last: Mapping[str, PartStatus],
        report: Progress,
    ) -> None:
        if not process_alive(pid):
            raise BackendError(
                "the embedded runtime exited while starting",
                f"read {self.log_file('embedded')} (or run `lab logs embedded`)",
            )
        if time.monotonic() > deadline:
            for name in pending:
                report(name, "failed", last[name].detail)
            raise BackendError(
                f"these parts did not become healthy within {UP_TIMEOUT_S:.0f} s: "
                f"{', '.join(pending)}",
                "check `lab status` and `lab logs PART`",
            )


# ---------------------------------------------------------------------- helpers (CLI side)


def ensure_lab_keys(settings: Settings) -> None:
    """Create the admin, MCP server and agent keys (0600) if they are missing (contracts §1)."""
    from lab.oauth.jose import ensure_private_key

    for principal in LAB_KEYS:
        ensure_private_key(settings.key_file(principal))


def bind_part_sockets(settings: Settings) -> dict[str, socket.socket]:
    """Bind every part's port now: a busy port fails here with the setting that moves it."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name, (variable, _default) in PORTS.items():
            if name == "idp" and settings.idp == "keycloak":
                continue  # Keycloak binds the IdP port itself
            sockets[name] = _listen(settings.host, settings.ports[name], variable)
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


#: How long a fresh start retries the ports a crashed runtime held (the kernel may keep them a
#: moment: connections the dead process had open close on its behalf).
CRASHED_PORTS_GRACE_S = 5.0


def _bind_after_crash(settings: Settings) -> dict[str, socket.socket]:
    """``bind_part_sockets``, retried briefly: after a crash (``kill -9``, OOM) the dead
    runtime's ports can stay taken for a moment, and ``lab up`` must still recover."""
    deadline = time.monotonic() + CRASHED_PORTS_GRACE_S
    while True:
        try:
            return bind_part_sockets(settings)
        except BackendError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _listen(host: str, port: int, variable: str) -> socket.socket:
    """What ``lab.serving.bind_socket`` does, without importing uvicorn into the CLI (~0.1 s)."""
    import errno
    import socket as socket_module

    family = socket_module.AF_INET6 if ":" in host else socket_module.AF_INET
    sock = socket_module.socket(family, socket_module.SOCK_STREAM)
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BackendError(
                f"port {port} on {host} is already in use",
                f"stop whatever holds it, or set {variable} to another port "
                f"(e.g. `export {variable}={_suggest_port(port)}`)",
            ) from None
        raise BackendError(
            f"cannot listen on {host}:{port}: {exc.strerror}", "check LAB_HOST"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port(host: str) -> int:
    """A port the kernel reports free now (for Keycloak, which binds its own port)."""
    sock = _listen(host, 0, "LAB_IDP_PORT")
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _suggest_port(port: int) -> int:
    return port + 10000 if port < 55535 else port - 10000


def preflight(settings: Settings) -> None:
    """Refuse to start on a damaged store or a broken providers file (exit 3, naming the file
    and the fix), and make ``$LAB_HOME`` owner-only; see :mod:`lab.homefiles`."""
    from lab.homefiles import HomeFileError, prepare_home

    try:
        prepare_home(
            settings.home,
            [settings.pdp_db, settings.docapi_db],
            settings.providers_file,
        )
    except HomeFileError as exc:
        raise BackendError(str(exc), exc.fix) from None


def spawn_runtime(settings: Settings, fds: Mapping[str, int]) -> int:
    """Start ``python -m lab.backends.embedded`` detached, with the bound sockets inherited."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(settings_env(settings))
    env[FDS_VARIABLE] = json.dumps(dict(fds))
    log = open(settings.logs_dir / LOG_FILES["embedded"], "ab")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "lab.backends.embedded"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=tuple(fds.values()),
            start_new_session=True,  # survives the terminal that ran `lab up`
            cwd=project_root(),
        )
    finally:
        log.close()
    return process.pid


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``LAB_*`` variables that reproduce these settings in another process."""
    env = {
        "LAB_HOME": str(settings.home),
        "LAB_HOST": settings.host,
        "LAB_BACKEND": "embedded",
        "LAB_POLICY_REFRESH_S": str(settings.policy_refresh_s),
        "LAB_LOG_LEVEL": settings.log_level,
        "LAB_IDP": settings.idp,
        "LAB_CACHE": str(settings.cache_dir),
    }
    if settings.llm_url:
        env["LAB_LLM_URL"] = settings.llm_url
    for name, (variable, _default) in PORTS.items():
        env[variable] = str(settings.ports[name])
    return env


def project_root() -> Path:
    """The checkout holding ``keycloak/``, ``athenz/`` and ``steps/`` (parts read files there)."""
    return Path(__file__).resolve().parents[2]


def read_runtime(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads(settings.runtime_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("backend") != "embedded" or "endpoints" not in data:
        return None
    return data


def write_runtime(settings: Settings, pid: int, endpoints: Endpoints) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    data = {
        "pid": pid,
        "backend": "embedded",
        "idp": settings.idp,
        "endpoints": endpoints.as_dict(),
        "ports": dict(settings.ports),
        "started": time.time(),
    }
    tmp = settings.runtime_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(settings.runtime_file)


def record_keycloak(
    settings: Settings, pid: int, home: Path, java: str | None, version: str | None = None
) -> None:
    """Note Keycloak's process in the runtime file (``lab down`` and ``lab status`` read it)."""
    data = read_runtime(settings)
    if data is None:
        return
    entry = dict(data.get("keycloak") or {})
    entry.update({"pid": pid, "home": str(home)})
    if java:
        entry["java"] = java
    if version:
        entry["version"] = version
    data["keycloak"] = entry
    tmp = settings.runtime_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(settings.runtime_file)


def clear_runtime(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        settings.runtime_file.unlink()


def process_alive(pid: object) -> bool:
    """Is ``pid`` a live embedded runtime? Guards against a reused pid on Linux."""
    return process_state(pid) == "running"


def process_state(pid: object) -> str:
    """``running`` (our runtime), ``exiting`` (dying, may still hold its ports), or ``gone``."""
    if not isinstance(pid, int) or pid <= 0:
        return "gone"
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return "gone"  # PermissionError: someone else's process holds this pid now
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return "running"  # no /proc (macOS): trust the signal check
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return "gone"
    if state in ("Z", "X"):
        _reap(pid)
        return "gone"
    if not cmdline:
        return "exiting"  # the kernel drops the command line before it closes the sockets
    return "running" if b"lab.backends.embedded" in cmdline else "gone"


def wait_until_gone(pid: object, timeout_s: float = DOWN_TIMEOUT_S) -> None:
    """Wait for a dying runtime to release its ports before binding them again."""
    deadline = time.monotonic() + timeout_s
    while process_state(pid) == "exiting" and time.monotonic() < deadline:
        time.sleep(0.01)


def _reap(pid: int) -> None:
    """Collect a zombie child (only when this process started it, as in tests)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(pid: int) -> None:
    """SIGTERM, wait for a graceful exit, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while time.monotonic() < deadline:
        _reap(pid)
        if process_state(pid) == "gone":
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def health_urls(endpoints: Endpoints, idp: str = "embedded") -> dict[str, str]:
    """Each part's ``/healthz`` URL (contracts §0), keyed by part name.

    Real Keycloak has no ``/healthz`` on its HTTP port (its health checks live on the
    management port): it is healthy when realm ``idjag`` serves its discovery document.
    """
    origins = {
        "idp": endpoints.idp_base,
        "zms": _origin(endpoints.zms),
        "zts": _origin(endpoints.zts),
        "docapi_protected": endpoints.docapi_protected,
        "docapi_unprotected": endpoints.docapi_unprotected,
        "mcp": _origin(endpoints.mcp),
    }
    urls = {name: f"{origins[name]}/healthz" for name in PART_NAMES}
    if idp == "keycloak":
        urls["idp"] = f"{endpoints.idp_issuer}/.well-known/openid-configuration"
    return urls


def part_urls(endpoints: Endpoints) -> dict[str, str]:
    """The URL a learner uses for each part (shown by ``lab up`` and ``lab status``)."""
    return {
        "idp": endpoints.idp_issuer,
        "zms": endpoints.zms,
        "zts": endpoints.zts,
        "docapi_protected": endpoints.docapi_protected,
        "docapi_unprotected": endpoints.docapi_unprotected,
        "mcp": endpoints.mcp,
    }


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def probe_part(name: str, url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> PartStatus:
    """``GET /healthz``: 200 = healthy; a stand-in's 503 carries why the part failed to build.

    Plain ``http.client``: it imports in milliseconds, and ``lab up``/``lab status`` wait on it.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    shown = url.removesuffix("/healthz").removesuffix("/.well-known/openid-configuration")
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s
    )
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return PartStatus(name, shown, False, f"not answering ({type(exc).__name__})")
    finally:
        connection.close()
    if status == 200:
        return PartStatus(name, shown, True, "ok")
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("status") == "unavailable":
        return PartStatus(name, shown, False, f"unavailable: {body.get('detail', '')}")
    return PartStatus(name, shown, False, f"/healthz answered {status}")


def check_parts(endpoints: Endpoints, idp: str = "embedded") -> tuple[PartStatus, ...]:
    return tuple(probe_part(name, url) for name, url in health_urls(endpoints, idp).items())


def reload_providers(settings: Settings, endpoints: Endpoints) -> None:
    """``POST {zts}/lab/reload`` as the system admin, so the PDP re-reads the providers file.

    Over ``http.client`` (lab.state's JsonClient): ``lab reset`` calls this whenever the trusted
    providers change, and importing httpx for one request was a third of that command."""
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey
    from lab.state import JsonClient

    key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
    assertion = make_admin_assertion(ADMIN_PRINCIPAL, key, endpoints.zts)
    url = f"{endpoints.zts}/lab/reload"
    client = JsonClient(timeout_s=5)
    try:
        status, text = client.request("POST", url, {"Authorization": f"Bearer {assertion}"})
    except OSError as exc:
        raise BackendError(
            f"the PDP did not answer at {url} ({exc})", "check `lab status`"
        ) from None
    finally:
        client.close()
    if status >= 300:
        raise BackendError(
            f"the PDP refused to reload its providers ({status}: {text[:200]})",
            "check `lab logs pdp`",
        )


def embedded_doctor(settings: Settings) -> list[DoctorCheck]:
    """What the embedded backend needs: Python 3.11+, its packages, free ports, a writable home."""
    checks = [
        DoctorCheck(
            "python >= 3.11",
            sys.version_info >= (3, 11),
            sys.version.split()[0],
            "install Python 3.11 or newer and run `make setup`",
        )
    ]
    for module in ("uvicorn", "starlette", "httpx", "jwt", "mcp", "yaml"):
        checks.append(_module_check(module))
    checks.append(_home_check(settings))
    checks.extend(_port_checks(settings))
    return checks


def keycloak_doctor(settings: Settings) -> list[DoctorCheck]:
    """Java and the cached distribution for ``--idp keycloak`` (required only when chosen)."""
    from lab.backends import keycloak_process as kc
    from lab.backends import versions

    required = settings.idp == "keycloak"
    ok, detail = kc.java_report()
    checks = [
        DoctorCheck(
            f"Java {versions.KEYCLOAK_MIN_JAVA}+ (real Keycloak, --idp keycloak)",
            ok,
            detail,
            None if ok else kc.java_install_hint(),
            required=required,
        )
    ]
    tarball = kc.tarball_path(settings.cache_dir)
    cached = tarball.exists()
    checks.append(
        DoctorCheck(
            f"Keycloak {versions.KEYCLOAK_VERSION} distribution cached",
            cached,
            str(tarball) if cached else f"not yet in {tarball.parent} (LAB_CACHE)",
            None if cached else "`lab up --idp keycloak` fetches it once (~170 MB)",
            required=False,
        )
    )
    return checks


def _module_check(module: str) -> DoctorCheck:
    import importlib.util

    found = importlib.util.find_spec(module) is not None
    return DoctorCheck(
        f"python package {module}", found, "installed" if found else "missing", "run `make setup`"
    )


def _home_check(settings: Settings) -> DoctorCheck:
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        writable = os.access(settings.home, os.W_OK)
    except OSError:
        writable = False
    return DoctorCheck(
        "LAB_HOME writable",
        writable,
        str(settings.home),
        "set LAB_HOME to a directory you can write",
    )


def _port_checks(settings: Settings) -> list[DoctorCheck]:
    running = read_runtime(settings)
    ours = (
        set(running["ports"].values()) if running and process_alive(running.get("pid")) else set()
    )
    checks = []
    for name, (variable, _default) in PORTS.items():
        port = settings.ports[name]
        if port in ours:
            checks.append(DoctorCheck(f"port {port} ({name})", True, "used by the running lab"))
            continue
        try:
            _listen(settings.host, port, variable).close()
            checks.append(DoctorCheck(f"port {port} ({name})", True, "free"))
        except BackendError:
            checks.append(
                DoctorCheck(
                    f"port {port} ({name})",
                    False,
                    "in use by another program",
                    f"set {variable} to a free port",
                )
            )
    return checks


# ---------------------------------------------------------------------- the runtime process

#: part name -> (room for logs, factory building its app). The PDP serves both ZMS and ZTS.
PART_ROOMS: dict[str, str] = {
    "idp": "idp",
    "zms": "pdp",
    "zts": "pdp",
    "docapi_protected": "docapi",
    "docapi_unprotected": "docapi",
    "mcp": "mcpserver",
}


def _build_idp(settings: Settings) -> Starlette:
    from lab.idp.app import create_app

    return create_app(settings)


def _build_pdp(settings: Settings) -> Starlette:
    from lab.pdp.app import create_app

    return create_app(settings)


def _build_docapi(protected: bool) -> Callable[[Settings], Starlette]:
    def build(settings: Settings) -> Starlette:
        from lab.docapi.app import create_app

        return create_app(settings, protected=protected)

    return build


def _build_mcp(settings: Settings) -> Starlette:
    from lab.mcpserver.app import create_app

    return create_app(settings)


FACTORIES: dict[str, Callable[[Settings], Starlette]] = {
    "idp": _build_idp,
    "pdp": _build_pdp,
    "docapi_protected": _build_docapi(True),
    "docapi_unprotected": _build_docapi(False),
    "mcp": _build_mcp,
}


def unavailable_app(part: str, detail: str) -> Starlette:
    """Stands in for a part that failed to build: ``/healthz`` says why, everything else 503s."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def unavailable(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "unavailable", "part": part, "detail": detail}, status_code=503
        )

    return Starlette(
        routes=[Route("/{path:path}", unavailable, methods=["GET", "POST", "PUT", "DELETE"])]
    )


#: Parts built in the background while the others already serve (see lab.backends.deferred):
#: the MCP server's SDK import is most of a warm `lab up` otherwise.
DEFERRED_PARTS = ("mcp",)
#: ...and started this long after the others serve, so the import (a second of CPU) does not
#: compete with their first answers, `lab up`'s health checks; a request for the part starts
#: it at once.
DEFERRED_BUILD_AFTER_S = 0.5


def build_apps(settings: Settings, deferred: tuple[str, ...] = ()) -> dict[str, Any]:
    """One app per port; a failed part is logged and replaced by :func:`unavailable_app`.

    Parts named in ``deferred`` start building in a background thread and are served by a
    :class:`~lab.backends.deferred.DeferredApp` meanwhile."""
    import logging

    log = logging.getLogger("lab.embedded")
    built: dict[str, Any] = {}
    later = []
    for key, factory in FACTORIES.items():
        if key == "idp" and settings.idp == "keycloak":
            continue  # real Keycloak serves the IdP port
        if key in deferred:
            from lab.backends.deferred import DeferredApp

            app = DeferredApp(key, functools.partial(factory, settings), unavailable_app)
            built[key] = app
            later.append(app)
            continue
        started = time.perf_counter()
        try:
            built[key] = factory(settings)
        except Exception as exc:  # noqa: BLE001 - one broken part must not take the others down
            log.exception("part %s failed to start", key)
            built[key] = unavailable_app(key, f"{type(exc).__name__}: {exc}")
        log.info("built %s in %.0f ms", key, (time.perf_counter() - started) * 1000)
    for app in later:
        app.start_building(after_s=DEFERRED_BUILD_AFTER_S)
    apps = {
        "idp": built.get("idp"),
        "zms": built["pdp"],
        "zts": built["pdp"],
        "docapi_protected": built["docapi_protected"],
        "docapi_unprotected": built["docapi_unprotected"],
        "mcp": built["mcp"],
    }
    return {name: app for name, app in apps.items() if app is not None}


def configure_logging(settings: Settings) -> None:
    """Runtime messages to stderr (``embedded.log``); each room's loggers to its own file."""
    import logging

    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.addHandler(stderr)
    for room, names in LOGGERS.items():
        handler = logging.FileHandler(settings.logs_dir / LOG_FILES[room], encoding="utf-8")
        handler.setFormatter(formatter)
        for name in names:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            logger.propagate = False
            logger.setLevel(level)


def inherited_sockets(settings: Settings) -> dict[str, socket.socket]:
    """The listening sockets ``lab up`` bound for us, or fresh ones when run by hand."""
    import socket as socket_module

    raw = os.environ.get(FDS_VARIABLE)
    if not raw:
        return bind_part_sockets(settings)
    fds = json.loads(raw)
    return {name: socket_module.socket(fileno=int(fd)) for name, fd in fds.items()}


async def serve_all(apps: Mapping[str, Any], sockets: Mapping[str, socket.socket]) -> None:
    """One uvicorn server per socket in this event loop; SIGTERM/SIGINT stop them all."""
    import asyncio
    import logging

    import uvicorn

    from lab.serving import uvicorn_config

    class QuietServer(uvicorn.Server):
        # Each server would install (and restore) process-wide signal handlers; we own them.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    servers: list[uvicorn.Server] = []
    seen: set[int] = set()
    for app in apps.values():
        config = uvicorn_config(app, log_level="warning")
        if id(app) in seen:
            config.lifespan = "off"  # the PDP app is served twice; start its lifespan once
        seen.add(id(app))
        servers.append(QuietServer(config))

    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    tasks = [
        asyncio.create_task(server.serve(sockets=[sockets[name]]), name=name)
        for server, name in zip(servers, apps, strict=True)
    ]
    log = logging.getLogger("lab.embedded")
    for task in asyncio.as_completed(tasks):
        try:
            await task
        except Exception:  # noqa: BLE001 - a crashed server shows as unhealthy in `lab status`
            log.exception("a part's server stopped with an error")


def main() -> None:
    from lab.startup import skip_httpx_cli

    skip_httpx_cli()  # before any part imports httpx
    import asyncio
    import logging

    from lab.homefiles import owner_only_umask

    owner_only_umask()  # keys, stores and logs under $LAB_HOME are owner-only from the start
    settings = Settings.from_env()
    configure_logging(settings)
    log = logging.getLogger("lab.embedded")
    started = time.perf_counter()
    in_foreground = FDS_VARIABLE not in os.environ  # run by hand, not by `lab up`
    sockets = inherited_sockets(settings)
    if in_foreground:
        ports = {**settings.ports, **{n: sock.getsockname()[1] for n, sock in sockets.items()}}
        settings = replace(settings, home=settings.home.resolve(), ports=ports)
        write_runtime(settings, os.getpid(), settings.endpoints)  # so `lab status` sees it
    ensure_lab_keys(settings)
    apps = build_apps(settings, deferred=DEFERRED_PARTS)
    log.info(
        "runtime %s ready to serve after %.0f ms",
        os.getpid(),
        (time.perf_counter() - started) * 1000,
    )
    try:
        asyncio.run(serve_all(apps, sockets))
    finally:
        runtime = read_runtime(settings)
        if runtime is not None and runtime.get("pid") == os.getpid():
            clear_runtime(settings)
        log.info("runtime %s stopped", os.getpid())


if __name__ == "__main__":
    main()
