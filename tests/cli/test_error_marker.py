"""A program that runs ``lab`` (the web view) and sets ``LAB_ERRORS_AS_JSON=1`` gets each
expected failure as one JSON line on stderr too; a command that gave up on the lab lock says
``kind: busy`` there, with exit 3 as before. A person's terminal never shows the line."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from lab.cli import common, error_marker
from lab.cli.lock import lab_lock


@pytest.fixture
def held_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A lab home whose lock another command holds (another open file: flock says busy)."""
    monkeypatch.setenv("LAB_LOCK_WAIT_S", "0.2")
    monkeypatch.setattr(common.STATE, "debug", False)
    fd = os.open(tmp_path / "lab.lock", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"4242 lab run\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield tmp_path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def give_up(home: Path) -> int:
    with pytest.raises(typer.Exit) as ended, common.handled_errors(), lab_lock(home, "lab step 3"):
        pytest.fail("the lock was taken although another command holds it")
    return int(ended.value.exit_code)


def test_a_command_that_gives_up_on_the_lock_marks_its_failure_busy(
    held_lab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(error_marker.ENV, "1")
    assert give_up(held_lab) == common.ExitCode.ENVIRONMENT
    err = capsys.readouterr().err
    marker = error_marker.read_marker(err)
    assert marker is not None and marker["kind"] == error_marker.BUSY
    assert "pid 4242: lab run" in marker["message"]
    assert marker["fix"] and "LAB_LOCK_WAIT_S" in marker["fix"]
    last = err.strip().splitlines()[-1]
    assert json.loads(last) == {error_marker.KEY: marker}  # one line, after the sentence


def test_a_person_never_sees_the_marker(
    held_lab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(error_marker.ENV, raising=False)
    assert give_up(held_lab) == common.ExitCode.ENVIRONMENT
    err = capsys.readouterr().err
    assert "still holds the lab" in err
    assert error_marker.read_marker(err) is None and error_marker.KEY not in err


def test_other_failures_carry_no_kind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(error_marker.ENV, "1")
    monkeypatch.setattr(common.STATE, "debug", False)
    with pytest.raises(typer.Exit), common.handled_errors():
        common.fail("there is no step 99", "choose one of: 1, 2", common.ExitCode.USAGE)
    marker = error_marker.read_marker(capsys.readouterr().err)
    assert marker == {"kind": None, "message": "there is no step 99", "fix": "choose one of: 1, 2"}
