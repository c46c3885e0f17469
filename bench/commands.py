"""Whole ``lab`` commands as a user runs them: a new process each time, timed from outside.

Each round runs every command once, in the same order, with the interpreter's own start-up
(``python -c pass``) as the floor beside them, so a busy machine slows all of them alike and the
min/median over rounds are comparable. The load average is recorded beside each run, and so is
the command's CPU time (user + system of the process and the children it waited for), which a
busy machine does not stretch the way it stretches wall-clock time. ``lab up``'s CPU is the
command's own: the runtime it starts is detached, not a child it waits for.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import loadavg


def lab_command() -> list[str]:
    """The ``lab`` console script beside this interpreter (what a user types), else ``-m``."""
    script = Path(sys.executable).with_name("lab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lab.cli"]


@dataclass
class Timed:
    name: str
    argv: list[str]
    before: Callable[[], None] | None = None  # untimed preparation (e.g. `lab down` before `up`)
    #: Another lab's environment and code (``--against``); None: the round's own.
    env: dict[str, str] | None = None
    cwd: Path | None = None
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    loads: list[list[float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "command": " ".join(
                Path(self.argv[0]).name if i == 0 else a for i, a in enumerate(self.argv)
            ),
            "runs": len(self.samples),
            "min_s": round(min(self.samples), 3),
            "median_s": round(statistics.median(self.samples), 3),
            "max_s": round(max(self.samples), 3),
            "samples_s": [round(s, 3) for s in self.samples],
            "cpu_min_s": round(min(self.cpu), 3),
            "cpu_median_s": round(statistics.median(self.cpu), 3),
            "cpu_s": [round(c, 3) for c in self.cpu],
            "loadavg": self.loads,
        }


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    return run_timed(argv, env, cwd)[0]


def run_timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv`` as a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-2000:]}"
        )
    return elapsed, cpu


def interleaved(
    commands: list[Timed], env: dict[str, str], cwd: Path, rounds: int, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    for round_number in range(warmup + rounds):
        for command in commands:
            if command.before is not None:
                command.before()
            load = loadavg()
            elapsed, cpu = run_timed(command.argv, command.env or env, command.cwd or cwd)
            if round_number >= warmup:
                command.samples.append(elapsed)
                command.cpu.append(cpu)
                command.loads.append(load)
    return {command.name: command.summary() for command in commands}


def python_floor() -> Timed:
    return Timed("python_start", [sys.executable, "-c", "pass"])


def env_for(base: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **base}
