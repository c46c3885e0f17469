"""A ``lab`` command runs the cyclic collector less often (issue #21: ~10 % of the MCP SDK's
import was collector passes that freed almost nothing); the runtime keeps CPython's default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.startup import COMMAND_GC_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, sys
sys.argv = ["lab", "--version"]
from lab.cli.main import run
try:
    run()
except SystemExit:
    pass
print(gc.get_threshold()[0])
"""


def test_a_lab_command_collects_its_young_generation_less_often() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip().splitlines()[-1]) == COMMAND_GC_THRESHOLD > 700


def test_the_runtime_module_leaves_the_collector_alone() -> None:
    code = "import gc, lab.backends.embedded.runtime; print(gc.get_threshold()[0])"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == 700
