"""Two real `lab verify` started together (issue #17: they interleaved and failed 16/17 and 7/17
with 409s). The lab-wide lock makes the second wait for the first: both pass every step.

`test_learner_terminal.py` holds the lock by hand to show the waiting message deterministically;
this test is the race itself, as a learner with two terminals makes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import ROOT, Stack, embedded_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("race") / "home") as running:
        yield running


@pytest.mark.slow
def test_two_lab_verify_at_once_both_pass_every_step(stack: Stack, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lab.cli", "verify", "--json", "-"]
    # Output to files, not pipes: a pipe nobody reads yet would stall whichever run holds the
    # lock, and with it the other one.
    outputs = [(tmp_path / f"out{n}", tmp_path / f"err{n}") for n in range(2)]
    runs = []
    for out, err in outputs:
        with out.open("w") as stdout, err.open("w") as stderr:
            runs.append(
                subprocess.Popen(command, env=stack.env, cwd=ROOT, stdout=stdout, stderr=stderr)
            )
    for run in runs:
        run.wait(timeout=600)
    errors = [err.read_text() for _, err in outputs]
    for run, (out, _), error in zip(runs, outputs, errors, strict=True):
        text = out.read_text()
        assert run.returncode == 0, text[-3000:] + error[-3000:]
        report = json.loads(text)
        steps = report["steps"] if isinstance(report, dict) else report
        statuses = {int(record["number"]): record["status"] for record in steps}
        assert statuses == {n: "passed" for n in range(1, 21)}, statuses
    # One of them waited for the other, and said so.
    assert any("waiting: another lab command" in error for error in errors), errors
