"""The agent's kept MCP session and HTTP pool (issue #21) against a real embedded runtime that
is stopped, killed (-9), restarted or reset while chains run (``lab up`` in a subprocess).

Every chain ends in bounded time: it succeeds, or it stops with a clear message naming the link
that broke; it never raises into the caller and never hangs. After the runtime is back, chains
from the same process (its kept session and pool) succeed again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from lab.agent import run_prompt
from lab.agent.chain import PromptResult
from lab.backends.embedded.runtime_file import read_runtime
from tests.stack import Stack, embedded_stack

USER, PASSWORD = "idjag-learner", "password"
THREADS = 6
#: No chain may take longer; the agent's own budget for one tool call is 90 s.
CHAIN_LIMIT_S = 60.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("restarts") / "home") as running:
        ready = running.lab("reset", "--to", "12")
        assert ready.returncode == 0, ready.stdout + ready.stderr
        yield running


def chain(stack: Stack) -> PromptResult:
    return run_prompt(stack.settings, stack.endpoints, "get docs", USER, PASSWORD)


def assert_works(stack: Stack) -> None:
    result = chain(stack)
    assert result.ok, result.message


class Load:
    """Chains from several threads, one after another, until stopped; every outcome kept."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop = threading.Event()
        self.outcomes: list[tuple[PromptResult, float]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            result = chain(self.stack)
            with self.lock:
                self.outcomes.append((result, time.monotonic() - started))

    def during(self, disturb: object) -> list[tuple[PromptResult, float]]:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            runners = [pool.submit(self.run) for _ in range(THREADS)]
            time.sleep(0.5)  # chains are under way
            try:
                disturb()  # type: ignore[operator]
                time.sleep(0.5)
            finally:
                self.stop.set()
            done, pending = wait(runners, timeout=CHAIN_LIMIT_S)
            assert not pending, "a chain did not end (hang)"
            for runner in done:
                runner.result()  # a chain raised instead of reporting its failure
        return self.outcomes


def assert_failures_are_clear(outcomes: list[tuple[PromptResult, float]]) -> None:
    assert outcomes
    for result, took in outcomes:
        assert took < CHAIN_LIMIT_S
        if not result.ok:
            assert result.stopped_at is not None or result.tool_results, result.message
            assert result.message.strip(), "a failed chain must say why"


def test_chains_while_the_lab_is_stopped_fail_clearly_and_recover_after_up(stack: Stack) -> None:
    assert_works(stack)
    outcomes = Load(stack).during(lambda: stack.lab("down"))
    assert_failures_are_clear(outcomes)
    assert any(not result.ok for result, _ in outcomes)  # the stop was seen
    down = chain(stack)
    assert not down.ok and down.stopped_at == "sign_in", down.message
    assert stack.lab("up").returncode == 0
    assert_works(stack)


def test_chains_while_the_runtime_is_killed_fail_clearly_and_recover_after_up(
    stack: Stack,
) -> None:
    assert_works(stack)
    runtime = read_runtime(stack.settings)
    assert runtime is not None

    def kill() -> None:
        os.kill(int(runtime["pid"]), signal.SIGKILL)

    outcomes = Load(stack).during(kill)
    assert_failures_are_clear(outcomes)
    up = stack.lab("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert_works(stack)


def test_chains_during_a_reset_end_and_work_after_it(stack: Stack) -> None:
    assert_works(stack)
    reset: list[int] = []
    outcomes = Load(stack).during(lambda: reset.append(stack.lab("reset", "--to", "12").returncode))
    assert reset == [0]
    assert_failures_are_clear(outcomes)
    assert_works(stack)


def test_after_a_hard_reset_chains_work_once_the_lab_is_up_again(stack: Stack) -> None:
    assert_works(stack)
    hard = stack.lab("reset", "--hard")
    assert hard.returncode == 0, hard.stdout + hard.stderr
    stopped = chain(stack)  # the agent of a process that outlived the lab
    assert not stopped.ok and stopped.message.strip()
    assert stack.lab("up").returncode == 0
    assert stack.lab("reset", "--to", "12").returncode == 0
    assert_works(stack)
