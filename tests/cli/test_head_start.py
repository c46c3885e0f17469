"""`lab up` starts the runtime before the CLI framework loads; nothing else does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.backends.embedded.runtime_file import read_runtime
from lab.cli.main import start_runtime_early
from lab.config import Settings
from tests.cli.conftest import Lab


@pytest.fixture
def lab_env(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Lab:
    for key in list(os.environ):
        if key.startswith("LAB_"):
            monkeypatch.delenv(key)
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    return lab


def test_plain_lab_up_spawns_the_runtime_early_and_up_adopts_it(lab_env: Lab) -> None:
    start_runtime_early(["up"])
    runtime = read_runtime(Settings.from_env())
    assert runtime is not None
    try:
        result = lab_env.invoke("up", "--json")
        assert result.exit_code == 0, result.output
        assert read_runtime(Settings.from_env())["pid"] == runtime["pid"]  # the same process
    finally:
        lab_env.invoke("down")


def test_other_commands_get_no_head_start(lab_env: Lab) -> None:
    start_runtime_early(["status"])
    start_runtime_early(["up", "--help"])
    assert read_runtime(Settings.from_env()) is None


def test_another_backend_gets_no_head_start(lab_env: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_BACKEND", "kind")
    start_runtime_early(["up"])
    assert not Path(lab_env.env["LAB_HOME"], "runtime.json").exists()


def test_a_busy_port_is_left_for_up_to_report(lab_env: Lab) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", int(lab_env.env["LAB_MCP_PORT"])))
    holder.listen()
    try:
        start_runtime_early(["up"])  # no exception: the command reports it
        result = lab_env.invoke("up")
    finally:
        holder.close()
    assert result.exit_code == 3
    assert "LAB_MCP_PORT" in result.output
