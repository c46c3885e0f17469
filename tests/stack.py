"""A whole embedded lab for integration tests: ``lab up`` in a subprocess, ``lab down`` after.

Used by the CLI, step and security suites::

    from tests.stack import start_embedded_stack

    with start_embedded_stack(tmp_path / "home") as endpoints:
        httpx.get(f"{endpoints.docapi_unprotected}/api/docs")

Every ``LAB_*_PORT`` is set to a free loopback port (never the defaults, which a developer's own
lab may hold) and ``LAB_HOME`` to the given folder, so several stacks can run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.config import PORTS, Endpoints, Settings

ROOT = Path(__file__).resolve().parents[1]
UP_TIMEOUT_S = 60


def free_ports() -> dict[str, int]:
    """One currently free loopback port per part (bound to port 0, read, released)."""
    socks = []
    try:
        for _ in PORTS:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return {name: sock.getsockname()[1] for name, sock in zip(PORTS, socks, strict=True)}
    finally:
        for sock in socks:
            sock.close()


def stack_env(
    home: Path, ports: Mapping[str, int], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a ``lab`` subprocess for this stack: its home and ports, no colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update(
        {
            "LAB_HOME": str(home),
            "LAB_BACKEND": "embedded",
            "LAB_POLICY_REFRESH_S": "0",
            "NO_COLOR": "1",
            "COLUMNS": "100",
        }
    )
    for name, (variable, _default) in PORTS.items():
        env[variable] = str(ports[name])
    # `lab` on PATH, as for a learner who activated .venv: "Next:" lines then read `lab ...`.
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def lab(
    *args: str, env: Mapping[str, str], timeout: float = UP_TIMEOUT_S, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lab.cli ARGS`` (the installed ``lab`` command) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@dataclass(frozen=True)
class Stack:
    """A running embedded lab: its endpoints, its ``LAB_*`` environment and its home."""

    endpoints: Endpoints
    env: dict[str, str]
    home: Path

    def lab(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run a ``lab`` command against this stack."""
        return lab(*args, env=self.env, timeout=timeout)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)


@contextlib.contextmanager
def embedded_stack(
    home: Path,
    ports: Mapping[str, int] | None = None,
    *,
    require_healthy: bool = True,
) -> Iterator[Stack]:
    """``lab up`` with its own ``LAB_HOME`` and ports; yields a :class:`Stack`; ``lab down`` after.

    With ``require_healthy=False`` a stack whose parts are not all healthy is still yielded
    (``lab up`` exits 3 then), so a test can inspect ``lab status``.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = stack_env(home, ports or free_ports())
    try:
        result = lab("up", "--json", env=env)
        if result.returncode != 0 and require_healthy:
            raise RuntimeError(
                f"`lab up` exited {result.returncode}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}\nlog: {_tail(home / 'logs' / 'embedded.log')}"
            )
        if result.returncode == 0:
            endpoints = Endpoints.from_dict(json.loads(result.stdout)["endpoints"])
        else:
            runtime = json.loads((home / "runtime.json").read_text())
            endpoints = Endpoints.from_dict(runtime["endpoints"])
        yield Stack(endpoints, env, home)
    finally:
        lab("down", env=env)


@contextlib.contextmanager
def start_embedded_stack(home: Path, ports: Mapping[str, int] | None = None) -> Iterator[Endpoints]:
    """``lab up`` with its own ``LAB_HOME`` and ports; yields the endpoints; ``lab down`` after."""
    with embedded_stack(home, ports) as stack:
        yield stack.endpoints


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"
