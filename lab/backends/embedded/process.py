"""The runtime process: spawning it detached with its sockets, telling it apart from a reused
pid, and stopping it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lab.backends.embedded.logs import LOG_FILES
from lab.config import PORTS, Settings

#: Environment variable carrying ``{part: fd}`` of the inherited listening sockets.
FDS_VARIABLE = "LAB_EMBEDDED_FDS"

DOWN_TIMEOUT_S = 5.0


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
    return Path(__file__).resolve().parents[3]


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
