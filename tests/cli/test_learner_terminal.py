"""The learner's terminal (issue #17), through the real ``lab`` command against a running
embedded lab at ``COLUMNS=80``: every step, hint and table fits; copyable commands stay whole;
the next command printed works in a fresh shell; state-changing commands never interleave;
the agent understands ordinary phrasings and says why a role is gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.steps import load_steps
from tests.stack import ROOT, Stack, embedded_stack

WIDTH = 80
#: A typical step fits in a few screens (80×24): the median step's default view takes at most
#: this many lines …
MEDIAN_BUDGET = 60
#: … and no step's more than this (details are behind --verbose and --json).
HARD_BUDGET = 100


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("term") / "home") as running:
        running.env["COLUMNS"] = str(WIDTH)
        running.env["LINES"] = "24"
        yield running


def lab(stack: Stack, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return stack.lab(*args, timeout=timeout)


def too_wide(text: str) -> list[str]:
    """Lines over 80 columns, except one shell word that cannot be split (a long URL or a
    quoted argument on a continuation line of its own)."""
    bad = []
    for line in text.splitlines():
        if len(line) <= WIDTH:
            continue
        words = line.strip().removesuffix("\\").split()
        if len(words) == 1:
            continue
        bad.append(line)
    return bad


def broken_commands(text: str) -> list[str]:
    """Continuation lines must rebuild a command the shell can parse."""
    broken, current, joined_word = [], "", False
    for line in text.splitlines():
        stripped = line.strip()
        if current:
            # "word \" continues with a new word; "wo\" continues the same word (a JWT).
            glue = "" if joined_word else " "
            current += glue + stripped.removesuffix("\\").rstrip()
            joined_word = stripped.endswith("\\") and not stripped.endswith(" \\")
            if not stripped.endswith("\\"):
                try:
                    shlex.split(current)
                except ValueError:
                    broken.append(current)
                current = ""
        elif stripped.endswith(" \\") and re.match(r"(\$ )?(curl|lab|\.venv/bin/lab)\b", stripped):
            current = stripped.removesuffix("\\").strip()
            joined_word = False
    return broken


def test_every_step_hint_and_table_fits_80_columns_and_a_few_screens(stack: Stack) -> None:
    assert lab(stack, "reset").returncode == 0
    lengths: dict[int, int] = {}
    for step in load_steps():
        result = lab(stack, "step", str(step.number))
        assert result.returncode == 0, f"step {step.number}:\n{result.stdout}\n{result.stderr}"
        text = result.stdout
        assert not too_wide(text), f"step {step.number}: {too_wide(text)}"
        assert not broken_commands(text), f"step {step.number}: {broken_commands(text)}"
        assert "${" not in text, f"step {step.number} shows an unfilled value"
        assert not re.search(r"\bNone\b", text), f"step {step.number} shows None"
        assert text.splitlines()[1].strip(), "the narrative's opening comes first"
        lengths[step.number] = len(text.splitlines())
        if step.hint:
            hint = lab(stack, "step", str(step.number), "--hint").stdout
            assert not too_wide(hint) and not broken_commands(hint), hint
        # --check fills its values too (step 3's check once showed `${learner_kid}`) and a
        # step with nothing to check says why instead of "SKIPPED 0/0". (The lab has moved on
        # past most steps here, so some checks fail: only the text is judged.)
        checked = lab(stack, "step", str(step.number), "--check").stdout
        assert "${" not in checked and not too_wide(checked), checked
        assert "0/0" not in checked, checked
    assert statistics.median(lengths.values()) <= MEDIAN_BUDGET, sorted(lengths.items())
    assert max(lengths.values()) <= HARD_BUDGET, sorted(lengths.items())
    audit = lab(stack, "audit").stdout
    assert not too_wide(audit), audit
    assert "reason" in audit.splitlines()[1] and not re.search(r"\bNone\b", audit)
    # Cells wrap between words: every learner name in the table is whole.
    assert "human.idjag-" not in audit.replace("human.idjag-learner", "")


def test_up_after_every_step_passed_points_past_step_1(stack: Stack) -> None:
    from lab.state import record_result

    for step in load_steps():
        record_result(stack.settings, step.number, step.slug, "passed", 1.0)
    result = lab(stack, "up")
    assert result.returncode == 0
    assert "Next: lab step 1" not in result.stdout
    assert "all" in result.stdout and "lab verify" in result.stdout


def test_next_command_works_verbatim_in_a_fresh_shell(stack: Stack, tmp_path: Path) -> None:
    """No activated .venv: `lab` is not on PATH, so the lab prints the path that works."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {**stack.env, "PATH": path}
    installed = Path(sys.prefix) / "bin" / "lab"
    if not installed.exists():
        pytest.skip("the lab is not installed as a console script here")
    out = subprocess.run(
        [str(installed), "reset"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    line = next(x for x in out.stderr.splitlines() if x.startswith("Next:"))
    command = line.removeprefix("Next:").strip()
    assert command.split()[0] != "lab"  # `lab` alone would be "command not found" here
    shell = subprocess.run(
        ["bash", "-c", command.replace("step 1", "--version")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert "idjag-lab" in shell.stdout


def test_two_state_changing_commands_never_interleave(stack: Stack) -> None:
    assert lab(stack, "reset", "--to", "13").returncode == 0
    # Hold the lab-wide lock as a first command would, for as long as the test decides: a race
    # between two real commands would pass or fail with the machine's speed.
    lock_path = Path(stack.env["LAB_HOME"]) / "lab.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} lab step 13\n".encode())
    command = [sys.executable, "-m", "lab.cli", "step", "13"]
    second = subprocess.Popen(
        command, env=stack.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert second.stderr is not None
        waiting = second.stderr.readline()  # blocks until the command says why it waits
        assert "waiting: another lab command" in waiting and "lab step 13" in waiting
        time.sleep(0.5)
        assert second.poll() is None  # it did not go ahead while the lab was held
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out2, err2 = second.communicate(timeout=180)
    # Once the lab was free it ran start to end: every check of step 13 passed.
    assert second.returncode == 0, out2 + err2
    assert re.search(r"PASSED\s+(\d+)/\1 checks", out2)


def test_a_command_gives_up_busy_with_exit_3(stack: Stack) -> None:
    lock_path = Path(stack.env["LAB_HOME"]) / "lab.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lab.cli", "reset"],
            env={**stack.env, "LAB_LOCK_WAIT_S": "0.5"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "busy: another lab command" in done.stderr


def test_agent_understands_ordinary_phrasings_and_says_why_a_role_is_gone(stack: Stack) -> None:
    assert lab(stack, "reset", "--to", "13").returncode == 0
    listed = lab(stack, "agent", "please list my documents")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "first default doc" in listed.stdout
    unknown = lab(stack, "agent", "summarise my week")
    assert unknown.returncode == 1
    assert "I can list your documents" in unknown.stdout
    assert not too_wide(unknown.stdout)
    assert lab(stack, "step", "13").returncode == 0
    refused = lab(stack, "agent", "get docs")
    assert refused.returncode == 1
    assert "step 13" in refused.stdout and "docs-getter" in refused.stdout
    assert not too_wide(refused.stdout)
    # The reason is printed once, not twice.
    reason = next(x for x in refused.stdout.splitlines() if "refused" in x)
    assert refused.stdout.count(reason) == 1


def test_mcp_call_error_wraps_between_words_and_keeps_urls_whole(stack: Stack) -> None:
    refused = lab(stack, "mcp", "call", "list_docs")  # no token: the MCP server's 401
    assert refused.returncode == 1
    assert not too_wide(refused.stdout), refused.stdout
    metadata = stack.endpoints.mcp_metadata
    assert metadata in refused.stdout, refused.stdout  # the URL is on one line, copyable
    assert refused.stdout.count("HTTP 401 unauthorized") == 1  # printed once


def test_cli_small_items(stack: Stack) -> None:
    assert lab(stack, "decode", "garbage").returncode == 2
    helped = lab(stack, "run", "--help")
    assert helped.returncode == 0 and "``" not in helped.stdout
    # Jumping ahead: the first words of the reason say what to do, not an internal path.
    assert lab(stack, "reset").returncode == 0
    ahead = lab(stack, "step", "12")
    assert ahead.returncode == 1
    reason = ahead.stdout.split("ERROR", 1)[1].splitlines()[1]
    assert reason.startswith("run the earlier steps first (`lab reset --to 12`"), ahead.stdout


def test_challenge_solved_then_run_passes_and_solution_is_idempotent(stack: Stack) -> None:
    assert lab(stack, "reset", "--to", "14").returncode == 0
    turn = lab(stack, "step", "14")
    assert turn.returncode == 0 and "CHALLENGE" in turn.stdout
    assert "${" not in turn.stdout and not too_wide(turn.stdout)
    assert "lab step 14 --check" in turn.stdout.splitlines()[-3]  # a command on its own line
    hint = lab(stack, "step", "14", "--hint").stdout
    assert "docs-poster" not in hint and "zts.jag_exchange" not in hint  # nudges, no answer
    for _ in range(2):  # --solution twice: the answer is applied again, nothing breaks
        applied = lab(stack, "step", "14", "--solution")
        assert applied.returncode == 0, applied.stdout
    solved = lab(stack, "step", "14")
    assert solved.returncode == 0, solved.stdout
    assert re.search(r"PASSED\s+(\d+)/\1 checks", solved.stdout)
    assert "${" not in solved.stdout and re.search(r"\(id\s+\d+\)", solved.stdout)
    created = lab(stack, "agent", "create a doc titled x with content y")
    assert created.returncode == 0, created.stdout


def _audit_seqs(stack: Stack, *args: str) -> set[int]:
    """The ``seq`` of every record ``lab audit --json ARGS`` shows."""
    done = lab(stack, "audit", "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return {int(r["seq"]) for r in json.loads(done.stdout)["records"]}


def test_step_17_and_lab_audit_show_only_the_run_since_the_last_reset(stack: Stack) -> None:
    assert lab(stack, "reset").returncode == 0
    assert lab(stack, "run", "--to", "17").returncode == 0
    old_run = _audit_seqs(stack)
    assert len(old_run) >= 10
    assert lab(stack, "reset").returncode == 0
    assert _audit_seqs(stack) == set()  # nothing decided yet in the new run
    assert "No decisions since the last `lab reset`" in lab(stack, "audit").stdout
    assert lab(stack, "run", "--to", "16").returncode == 0
    done = lab(stack, "step", "17", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    export = next(a for a in json.loads(done.stdout)["actions"] if a["id"] == "export")
    shown = {int(r["seq"]) for r in export["result"]["records"]}
    assert len(shown) >= 10 and not shown & old_run, "step 17 shows the old run's records"
    assert min(shown) > max(old_run)
    text = lab(stack, "step", "17").stdout
    assert re.search(r"since the last lab reset \(after #\d+\)", text), text
    # `lab audit` by default: this run only; --all: every run; --verify: the whole chain.
    assert not _audit_seqs(stack) & old_run
    assert old_run <= _audit_seqs(stack, "--all")
    verified = lab(stack, "audit", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    intact = re.search(r"the chain of (\d+) records is intact", verified.stdout)
    assert intact is not None, verified.stdout
    assert int(intact[1]) >= max(shown)  # checked from record #1 on, old runs included


def test_a_step_run_again_on_a_lab_that_went_on_says_how_to_run_it_as_meant(
    stack: Stack,
) -> None:
    # Steps 1–15 are done: step 14's challenge and step 15 changed the documents step 1 counts.
    assert lab(stack, "reset", "--to", "16").returncode == 0
    again = lab(stack, "step", "1")
    assert again.returncode == 1, again.stdout
    said = " ".join(again.stderr.split())
    assert "this lab has gone on to step 15 since the last reset" in said, again.stderr
    commands = [line.strip() for line in again.stderr.splitlines() if "&&" in line]
    assert len(commands) == 1 and commands[0].endswith("step 1"), again.stderr
    # The command, pasted as printed, runs step 1 as it was meant: it passes.
    pasted = subprocess.run(
        ["bash", "-c", commands[0]], env=stack.env, cwd=ROOT, capture_output=True, text=True
    )
    assert pasted.returncode == 0, pasted.stdout[-2000:] + pasted.stderr
    assert re.search(r"PASSED\s+(\d+)/\1 checks", pasted.stdout)
    # A step whose later steps have not run says nothing of the kind when it fails.
    assert "gone on" not in lab(stack, "step", "2", "--check").stderr
