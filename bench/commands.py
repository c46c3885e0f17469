"""Whole ``lab`` commands as a user runs them: a new process each time, timed from outside.

Each round runs every command once, in the same order, with the interpreter's own start-up
(``python -c pass``) as the floor beside them, so a busy machine slows all of them alike and the
min/median over rounds are comparable. The load average is recorded before and after each run.
"""

from __future__ import annotations

import os
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
    samples: list[float] = field(default_factory=list)
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
            "loadavg": self.loads,
        }


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-2000:]}"
        )
    return elapsed


def interleaved(
    commands: list[Timed], env: dict[str, str], cwd: Path, rounds: int, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    for round_number in range(warmup + rounds):
        for command in commands:
            if command.before is not None:
                command.before()
            load = loadavg()
            elapsed = run_once(command.argv, env, cwd)
            if round_number >= warmup:
                command.samples.append(elapsed)
                command.loads.append(load)
    return {command.name: command.summary() for command in commands}


def python_floor() -> Timed:
    return Timed("python_start", [sys.executable, "-c", "pass"])


def env_for(base: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **base}
