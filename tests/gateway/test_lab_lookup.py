"""``lab gateway`` looks the lab up with ONE read of ``runtime.json``: the bytes that identify
the run also choose the backend and give the endpoints. Before, each look read the record three
times (its bytes, the backend it names, the endpoints), so the identity and the endpoints could
come from two different runs of the lab, and every look after a call without an answer paid
three reads."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cli import gateway as gateway_cli
from lab.config import Settings
from lab.gateway.links import ChainBroken


@pytest.fixture
def runtime_process() -> Iterator[int]:
    """A live process whose command line names the embedded runtime (what process_alive checks)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "lab.backends.embedded"]
    )
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def reads_of(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``reads_of(path)()``: how many times ``path`` was opened since (by any open)."""
    monkeypatch.delenv("LAB_BACKEND", raising=False)
    opened: list[str] = []
    real_open = io.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)

    def reads(path: Path) -> Any:
        start = len(opened)
        return lambda: opened[start:].count(str(path))

    return reads


def test_a_look_reads_the_runtime_record_once(
    lab_settings: Settings, runtime_process: int, reads_of: Any
) -> None:
    record = {
        "pid": runtime_process,
        "backend": "embedded",
        "idp": "embedded",
        "endpoints": lab_settings.endpoints.as_dict(),
    }
    lab_settings.runtime_file.write_text(json.dumps(record))
    locate = gateway_cli._lab_locator(lab_settings)
    count = reads_of(lab_settings.runtime_file)
    identity, endpoints = locate()
    assert count() == 1
    assert identity == hashlib.sha256(lab_settings.runtime_file.read_bytes()).hexdigest()
    assert endpoints == lab_settings.endpoints


def test_a_look_with_no_lab_reads_once_and_names_lab_up(
    lab_settings: Settings, reads_of: Any
) -> None:
    locate = gateway_cli._lab_locator(lab_settings)
    count = reads_of(lab_settings.runtime_file)
    with pytest.raises(ChainBroken) as broken:
        locate()
    assert count() == 1
    assert broken.value.link == "lab" and "lab up" in broken.value.explain()


def test_a_record_whose_runtime_died_is_a_lab_that_is_down(
    lab_settings: Settings, reads_of: Any
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "backend": "embedded", "endpoints": lab_settings.endpoints.as_dict()}
    lab_settings.runtime_file.write_text(json.dumps(record))
    locate = gateway_cli._lab_locator(lab_settings)
    count = reads_of(lab_settings.runtime_file)
    with pytest.raises(ChainBroken):
        locate()
    assert count() == 1
