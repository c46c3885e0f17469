"""Fixtures for the embedded IdP: the real app on a loopback port, the real realm file."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.config import Settings
from lab.idp.app import DEFAULT_REALM_FILE
from tests.idp.helpers import Idp, serve_idp


@pytest.fixture
def idp(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> Idp:
    return serve_idp(lab_settings, reserved_sockets["idp"], serve)


@pytest.fixture
def write_realm(tmp_path: Path) -> Callable[[Callable[[dict[str, Any]], None]], Path]:
    """Write a changed copy of the shipped realm file; the callback edits the parsed JSON."""

    def write(edit: Callable[[dict[str, Any]], None]) -> Path:
        document = json.loads(DEFAULT_REALM_FILE.read_text())
        edit(document)
        path = tmp_path / f"realm-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(document))
        return path

    return write
