"""CLI tests run the real Typer app in-process (CliRunner) with a private $LAB_HOME and ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import common
from lab.cli.main import app
from tests.stack import free_ports, stack_env


class Lab:
    """``lab.invoke("status", "--json")`` runs ``lab status --json`` with this test's settings."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    @property
    def home(self) -> Path:
        return Path(self.env["LAB_HOME"])

    def invoke(self, *args: str, input: str | None = None):  # noqa: A002 - CliRunner's name
        # Unset every LAB_* the developer's shell may carry, then apply ours.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAB_")}
        env.update(self.env)
        return self.runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A CLI whose LAB_HOME is a fresh temp folder and whose ports are free ones (nothing runs)."""
    yield Lab(stack_env(tmp_path / "home", free_ports()))
    common.STATE.backend = None
    common.STATE.debug = False
