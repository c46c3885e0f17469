"""A `lab` command keeps its in-process parts' log records off the learner's screen."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cli.part_logs import CLI_LOG, keep_part_logs_off_the_screen


@pytest.fixture
def lab_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("lab")
    handlers, propagate = list(logger.handlers), logger.propagate
    yield logger
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.propagate = propagate


def test_a_part_warning_goes_to_cli_log_owner_only_not_stderr(
    lab_logger: logging.Logger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    keep_part_logs_off_the_screen(["step", "20"], {"LAB_HOME": str(home)})
    assert not (home / "logs").exists()  # nothing logged yet: nothing created
    logging.getLogger("lab.gateway").warning("tools/call list_docs: a tool error")
    for handler in lab_logger.handlers:
        handler.flush()
    log = home / "logs" / CLI_LOG
    assert "WARNING lab.gateway: tools/call list_docs: a tool error" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    captured = capsys.readouterr()
    assert "tool error" not in captured.err + captured.out


def test_lab_gateway_keeps_its_own_stderr_logging(
    lab_logger: logging.Logger, tmp_path: Path
) -> None:
    before = list(lab_logger.handlers)
    keep_part_logs_off_the_screen(["gateway", "--stdio"], {"LAB_HOME": str(tmp_path)})
    # An MCP stdio server logs to stderr by contract; `lab gateway` sets that up itself.
    assert lab_logger.handlers == before and lab_logger.propagate
