"""Many users' chains at once from several processes, each with several threads, through
``lab.agent`` against one in-process lab (issue #21: every process keeps one MCP session and
one HTTP pool shared by its agents). Every chain ends with its own user's tokens and results,
no wait is unbounded, and the lab answers a chain afterwards."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.agent.labsetup import RunningLab
from tests.reliability.forking import start_child
from tests.reliability.test_concurrency import USERS, lab, realm_file, run_chain

__all__ = ["lab", "realm_file"]  # the module-scoped fixtures this module shares

PROCESSES = 4
THREADS = 4  # c16 in all
CHAINS_PER_THREAD = 2
LIMIT_S = 120.0  # a hang fails here; a loaded 2-core machine runs this in seconds


def chains_of(lab: RunningLab, realm_file: Path, process: int) -> list[dict[str, Any]]:
    users = [USERS[(process + n) % len(USERS)] for n in range(THREADS * CHAINS_PER_THREAD)]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(lambda user: run_chain(lab, realm_file, user), users))


def test_chains_from_several_processes_each_get_their_own_users_tokens_and_results(
    lab: RunningLab, realm_file: Path
) -> None:
    run_chain(lab, realm_file, USERS[0])  # the parent keeps a session and pool before forking
    children = [start_child(lambda n=n: chains_of(lab, realm_file, n)) for n in range(PROCESSES)]
    deadline = time.monotonic() + LIMIT_S
    outcomes = [outcome for child in children for outcome in child.result(deadline)]

    assert len(outcomes) == PROCESSES * THREADS * CHAINS_PER_THREAD
    for outcome in outcomes:
        principal = f"human.{outcome['user']}"
        assert outcome["id_jag"]["sub"] == principal
        assert outcome["access"]["sub"] == principal
        assert outcome["received"]["jti"] == outcome["access"]["jti"]  # its own token arrived
        assert outcome["exchanged"]["sub"] == principal
        assert outcome["docs"] == [1, 2]
    assert len({o["access"]["jti"] for o in outcomes}) == len(outcomes)
    # The lab, and the parent's kept session and pool, still answer.
    after = run_chain(lab, realm_file, USERS[1])
    assert after["access"]["sub"] == f"human.{USERS[1]}"
