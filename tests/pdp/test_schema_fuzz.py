"""Schemathesis drives both OpenAPI documents against a live PDP: no input may cause a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from tests.pdp.conftest import PdpLab

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(
    not SCHEMATHESIS.exists() and not shutil.which("schemathesis"),
    reason="schemathesis not installed",
)
@pytest.mark.parametrize("part", ["zms", "zts"])
def test_no_server_error_for_generated_requests(world: PdpLab, part: str, tmp_path: Path) -> None:
    base = world.zms if part == "zms" else world.zts
    token = make_admin_assertion(ADMIN_PRINCIPAL, world.key(ADMIN_PRINCIPAL), base)
    command = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "8",
        "--seed",
        "1",
        "--header",
        f"Authorization: Bearer {token}",
        "--no-color",
    ]
    # Run from a temporary folder: schemathesis writes a .schemathesis/ cache where it runs.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
