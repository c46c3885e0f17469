from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.config import Settings
from lab.steps.engine import RunContext
from tests.steps.fake_lab import FakeBackend, FakeLab

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def fake_lab(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> FakeLab:
    """The same small app on the ZMS, ZTS, protected document API and MCP sockets."""
    lab = FakeLab.create(lab_settings)
    app = lab.app()
    for part in ("zms", "zts", "docapi_protected", "mcp"):
        serve(app, reserved_sockets[part])
    return lab


@pytest.fixture
def ctx(lab_settings: Settings, fake_lab: FakeLab) -> RunContext:
    return RunContext(lab_settings, lab_settings.endpoints, FakeBackend(lab_settings))
