"""Fixtures for the gateway: a provisioned embedded lab, and ``lab gateway --headless`` over HTTP.

The lab runs as ``lab up`` in a subprocess (``tests.stack``) and is configured as steps 2–11
leave it (``tests.agent.labsetup.provision``), so the whole chain works through the gateway.
The gateway itself runs as the real command, ``python -m lab.cli gateway --headless --port 0``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.gateway.state import read_state
from tests.agent.labsetup import Admin, provision
from tests.stack import ROOT, Stack, embedded_stack

START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def lab_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("gateway") / "home") as stack:
        admin = Admin(stack.settings)
        try:
            provision(admin, stack.settings)
        finally:
            admin.http.close()
        yield stack


@pytest.fixture(scope="module")
def admin(lab_stack: Stack) -> Iterator[Admin]:
    admin = Admin(lab_stack.settings)
    try:
        yield admin
    finally:
        admin.http.close()


@dataclass
class RunningGateway:
    url: str
    process: subprocess.Popen[str]
    log: Path


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab.cli", "gateway", *args]


@pytest.fixture(scope="module")
def http_gateway(lab_stack: Stack) -> Iterator[RunningGateway]:
    """``lab gateway --headless`` on a free loopback port; its URL is read from gateway.json."""
    log = lab_stack.home / "gateway-test.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            gateway_command("--headless", "--port", "0"),
            env=lab_stack.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            yield RunningGateway(_wait_for_url(process, lab_stack.home, log), process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _wait_for_url(process: subprocess.Popen[str], home: Path, log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"lab gateway exited {process.returncode}: {log.read_text()}")
        running = read_state(home)
        if running is not None and running.pid == process.pid:
            return running.url
        time.sleep(0.05)
    raise RuntimeError(f"lab gateway did not start in {START_TIMEOUT_S}s: {log.read_text()}")
