"""`lab reset --to N` leaves the lab ready for step N, for every N: the step then passes, and
its `--check` recognises the state the step produced (and, for steps that change state, does not
recognise the state before it).

Runs against the one lab that test_all_steps.py starts and verifies (the verify run leaves a
checkpoint after each step, so each reset is a restore, not a replay).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.steps.load import load_steps
from tests.stack import ROOT
from tests.steps.test_all_steps import LabProcess, shared_lab

#: Steps whose --check must fail before the step ran: their check reads state the step creates.
#: (Step 17's check verifies the audit trail is intact, which holds before the step as well.)
DISCRIMINATING_CHECKS = (2, 3, 4, 5, 7, 8, 10, 11, 13, 14, 15, 19)
WITH_CHECK_BLOCK = {s.number for s in load_steps() if s.check_actions}
#: Challenge steps: a plain `lab step N` stops before the answer (`solution: true` actions).
CHALLENGES = {s.number for s in load_steps() if any(a.solution for a in s.actions)}
#: Every step: its --manual output runs as it is when pasted into a shell (captured values
#: become shell variables through `$(… | jq)` and `lab captured NAME`), and then its --check
#: recognises the state (issue #17: the hard way pastes).
MANUAL_REPLAYABLE = tuple(s.number for s in load_steps())


@pytest.fixture(scope="session")
def lab_stack(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabProcess]:
    yield shared_lab(pytestconfig, tmp_path_factory.mktemp("steps-e2e"))


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"[-4000:]


@pytest.mark.parametrize("number", range(1, 20))
def test_reset_to_step_then_run_it(lab_stack: LabProcess, number: int) -> None:
    reset = lab_stack.lab("reset", "--to", str(number))
    assert reset.returncode == 0, explain(reset)
    if number in DISCRIMINATING_CHECKS:
        before = lab_stack.lab("step", str(number), "--check")
        assert before.returncode == 1, "--check passed before the step ran:\n" + explain(before)
    run = lab_stack.lab("step", str(number))
    assert run.returncode == 0, explain(run)
    if number in CHALLENGES:
        # The learner's turn: the answer is not applied, so the state is still the old one.
        assert "CHALLENGE" in run.stdout, explain(run)
        unsolved = lab_stack.lab("step", str(number), "--check")
        assert unsolved.returncode == 1, "--check passed before the answer:\n" + explain(unsolved)
        solved = lab_stack.lab("step", str(number), "--solution")
        assert solved.returncode == 0, explain(solved)
    if number in WITH_CHECK_BLOCK:
        after = lab_stack.lab("step", str(number), "--check")
        assert after.returncode == 0, explain(after)


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq"
)
@pytest.mark.parametrize("number", MANUAL_REPLAYABLE)
def test_manual_commands_produce_the_state_check_recognises(
    lab_stack: LabProcess, number: int
) -> None:
    reset = lab_stack.lab("reset", "--to", str(number))
    assert reset.returncode == 0, explain(reset)
    manual = lab_stack.lab("step", str(number), "--manual")
    assert manual.returncode == 0, explain(manual)
    assert "then set" not in manual.stdout, manual.stdout  # no value left for the learner to copy
    env = {
        **lab_stack.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # What a learner does: paste the printed commands into a shell, in the repository. (No -e:
    # some commands show a refusal on purpose, and a pasted script carries on after them.)
    typed = subprocess.run(
        ["bash"],
        input=manual.stdout,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for problem in ("command not found", "syntax error", "parse error", "unexpected EOF"):
        assert problem not in typed.stderr, manual.stdout + explain(typed)
    check = lab_stack.lab("step", str(number), "--check")
    step = _step(number)
    if number not in WITH_CHECK_BLOCK and not any(a.check for a in step.actions):
        # A step that changes no state has nothing for --check to recognise: it says why
        # (its nothing_to_check sentence), never an empty "SKIPPED 0/0".
        assert check.returncode == 0, explain(check)
        assert "NOTHING TO CHECK" in check.stdout and "0/0" not in check.stdout, explain(check)
        assert step.nothing_to_check.split(":")[0] in " ".join(check.stdout.split())
        return
    assert check.returncode == 0, (
        explain(check) + "\n--- script ---\n" + manual.stdout + explain(typed)
    )


def _step(number: int) -> Any:
    return next(s for s in load_steps() if s.number == number)
