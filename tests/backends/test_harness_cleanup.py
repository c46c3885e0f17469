"""The test harness itself: a run stopped with SIGTERM still takes down the labs it started.

`lab up` detaches its runtime (a learner's lab outlives the terminal), so a pytest killed
before its fixtures' teardown left every lab it had started running, holding ports and CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.backends.embedded.process import process_alive
from tests.stack import lab, stack_env

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_run_stopped_with_sigterm_takes_its_lab_down(tmp_path: Path) -> None:
    home = tmp_path / "lab-home"
    test_file = tmp_path / "test_holds_a_lab.py"
    test_file.write_text(
        textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from tests.stack import embedded_stack

            def test_holds() -> None:
                with embedded_stack(Path({str(home)!r})):
                    Path({str(tmp_path / "up")!r}).write_text("up")
                    time.sleep(120)
            """
        )
    )
    run = subprocess.Popen(
        # The suite's conftest as a plugin: the inner test file lives outside tests/.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
        + [str(test_file)],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "up").exists():
            assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
            assert time.monotonic() < deadline, "the inner run's lab never came up"
            time.sleep(0.1)
        pid = json.loads((home / "runtime.json").read_text())["pid"]
        assert process_alive(pid)
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        gone_by = time.monotonic() + 15
        while process_alive(pid) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not process_alive(pid), "the lab outlived the run that started it"
        assert not (home / "runtime.json").exists()
    finally:
        if run.poll() is None:
            run.kill()
        if (home / "runtime.json").exists():
            lab(
                "down",
                env=stack_env(home, json.loads((home / "runtime.json").read_text())["ports"]),
            )
