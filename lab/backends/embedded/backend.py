"""The backend object the CLI drives: start, wait for health, stop, status, logs, providers."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.backends.base import (
    BackendError,
    BackendNotRunning,
    BackendStatus,
    DoctorCheck,
    PartStatus,
    Progress,
)
from lab.backends.embedded.doctor import embedded_doctor, keycloak_doctor
from lab.backends.embedded.health import check_parts, health_urls, probe_part
from lab.backends.embedded.logs import KEYCLOAK_LOG, LOG_ALIASES, LOG_FILES
from lab.backends.embedded.ports import (
    bind_after_crash,
    bind_part_sockets,
    free_port,
    listen_socket,
)
from lab.backends.embedded.process import (
    process_alive,
    project_root,
    spawn_runtime,
    stop_process,
    wait_until_gone,
)
from lab.backends.embedded.runtime_file import (
    clear_runtime,
    embedded_record,
    read_runtime,
    record_keycloak,
    write_runtime,
)
from lab.config import ADMIN_PRINCIPAL, Endpoints, Settings

#: How long ``up`` waits for every part to answer ``/healthz``.
UP_TIMEOUT_S = 20.0


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
                listen_socket(self.settings.host, self.settings.ports["idp"], variable).close()
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
        return self.endpoints_in(read_runtime(self.settings))

    def endpoints_in(self, record: Any) -> Endpoints:
        runtime = embedded_record(record)
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
        # The running PDP first: a refusal must leave the file as it was, or the next `lab up`
        # would quietly trust what `lab providers set` said it had not set.
        endpoints = self.endpoints()
        path = self.settings.providers_file
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = path.read_bytes() if path.exists() else None
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(providers, indent=2))
        tmp.replace(path)
        try:
            reload_providers(self.settings, endpoints)
        except BackendError:
            # The PDP refused the list (an entry without issuerUri): put the file back, so the
            # file and the running PDP keep agreeing, and a restart does not load the refused list.
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                tmp.write_bytes(previous)
                tmp.replace(path)
            raise

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
            listen_socket(settings.host, process.port, settings.port_variable("idp")).close()
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
            bind_after_crash(self.settings) if after_crash else bind_part_sockets(self.settings)
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
        try:
            reason = str(json.loads(text).get("error_description") or text)
        except (ValueError, AttributeError):
            reason = text
        raise BackendError(
            f"the PDP refused the providers ({status}): {reason[:300]}",
            "each entry needs issuerUri and jwksUri (see `lab step 10 --manual`); "
            "the PDP kept its previous list",
        )
