"""`lab verify` at a real terminal (issue #17: "`lab verify` leaves the spinner text on screen").

The spinner only exists when the output is a terminal, so a captured run cannot show the bug:
this test gives `lab verify` a pseudo-terminal 80 columns wide (TERM=xterm), reads everything
it writes, and lets `pyte` (a terminal emulator) draw it. The emulated screen is wider than the
terminal `lab` was given, so a line written past column 80 stays visible instead of wrapping.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from tests.stack import ROOT, Stack, embedded_stack

try:
    import pyte
except ImportError:  # a dev dependency: CI installs it, so there a missing pyte is a failure
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("pyte draws the terminal (pip install -e '.[dev]')", allow_module_level=True)

COLUMNS, ROWS = 80, 24
#: The emulated screen: wider than the terminal, so overlong lines show; tall enough to keep
#: every line of the run (a scrolled-off spinner line would otherwise go unseen).
SCREEN_COLUMNS, SCREEN_ROWS = 160, 400
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("pty") / "home") as running:
        yield running


def run_at_a_terminal(stack: Stack, *args: str, timeout: float = 600) -> tuple[int, bytes]:
    """Run `lab ARGS` with stdin, stdout and stderr on one 80×24 pseudo-terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in stack.env.items() if k not in ("NO_COLOR", "CI", "TERM", "FORCE_COLOR")}
    env.update(COLUMNS=str(COLUMNS), LINES=str(ROWS), TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=ROOT,
        close_fds=True,
        start_new_session=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the terminal closed (the process ended)
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"lab {' '.join(args)} did not finish in {timeout} s")
        return proc.wait(timeout=30), b"".join(chunks)
    finally:
        os.close(leader)


def drawn(output: bytes) -> list[str]:
    """What a terminal shows after all of it: carriage returns, erased lines, cursor moves."""
    screen = pyte.Screen(SCREEN_COLUMNS, SCREEN_ROWS)
    # A real terminal turns "\n" into CR LF (the pty's ONLCR); pyte takes the bytes as sent.
    screen.set_mode(pyte.modes.LNM)
    stream = pyte.ByteStream(screen)
    stream.feed(output)
    return [line.rstrip() for line in screen.display]


def test_lab_verify_leaves_no_spinner_text_and_no_line_past_80_columns(stack: Stack) -> None:
    code, output = run_at_a_terminal(stack, "verify")
    lines = drawn(output)
    text = "\n".join(line for line in lines if line)
    assert code == 0, text
    # The spinner did run (else this test proves nothing) ...
    assert any(ch in output.decode("utf-8", "replace") for ch in SPINNER), "no spinner drawn"
    # ... and none of it is left: no spinner glyph, no "step N: title" status text.
    assert not any(ch in text for ch in SPINNER), text
    assert "step 1: " not in text and "starting" not in text, text
    results = [line for line in lines if line.startswith(("✓ ", "✗ ", "- "))]
    assert len(results) >= 20, text  # one result line per step, and the summary
    # Nothing else reaches the screen: a part run in-process (step 20's gateway) logging a
    # warning would break into the report with a second, unwrapped account of a refusal the
    # step already reports.
    strays = [line for line in lines if line and line not in results]
    assert not strays, "\n".join(strays)
    assert any("1 document-api" in line for line in results), text
    assert all(line.split()[0] in "✓-" for line in results), text
    too_wide = [line for line in lines if len(line) > COLUMNS]
    assert not too_wide, "\n".join(too_wide)
