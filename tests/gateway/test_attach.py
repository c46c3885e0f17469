"""Finding the lab at each request without reading its runtime record each time, and never on
the event loop: the gateway looks the lab up (reads ``runtime.json``, asks the backend) only when
one ``stat`` of the record says it changed, always afresh after a call that got no answer, and
that look runs in a worker thread."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from lab.config import Endpoints, Settings
from lab.gateway.attach import Attachment, Wiring, lab_not_running, record_mark
from lab.gateway.chain import HEADLESS, SignInPlan
from lab.gateway.launch import Gateway
from lab.gateway.proxy import GatewayProxy
from lab.gateway.upstream import McpRefused


class Lab:
    """A runtime record on disk and a locate() that counts its looks and where they ran."""

    def __init__(self, record: Path, endpoints: Endpoints) -> None:
        self.record = record
        self.endpoints = endpoints
        self.looks: list[threading.Thread] = []
        self.builds = 0
        self.alive = True  # its process: killed, it leaves its record as it was

    def start(self, run: int) -> None:
        """``lab up``: a new record, written aside and moved in place as the backends do."""
        aside = self.record.with_suffix(".tmp")
        aside.write_text(json.dumps({"run": run}))
        aside.replace(self.record)

    def stop(self) -> None:
        self.record.unlink()

    def kill(self) -> None:
        self.alive = False

    def locate(self) -> tuple[str, Endpoints]:
        self.looks.append(threading.current_thread())
        if not self.alive:
            raise lab_not_running("the lab is not running", "run `lab up`")
        try:
            identity = self.record.read_text()
        except FileNotFoundError:
            raise lab_not_running("the lab is not running", "run `lab up`") from None
        return identity, self.endpoints

    def build(self, endpoints: Endpoints) -> Wiring:
        self.builds += 1
        return fake_wiring()


class FakeUpstream:
    """An MCP server that never answers (the lab went down mid-call)."""

    async def call_tool(self, *args: Any) -> Any:
        raise McpRefused("connection refused", None)

    async def list_tools(self, *args: Any) -> Any:
        raise McpRefused("connection refused", None)


def fake_wiring() -> Wiring:
    agent: Any = SimpleNamespace(http=SimpleNamespace(headers={}), close=lambda: None)
    keeper: Any = SimpleNamespace(access_token=lambda: "token", dropped_roles=[], subject="s")
    hops: Any = SimpleNamespace(flush=lambda: [])
    upstream: Any = FakeUpstream()
    return Wiring(agent, keeper, upstream, hops)


@pytest.fixture
def lab(tmp_path: Path, lab_settings: Settings) -> Lab:
    running = Lab(tmp_path / "runtime.json", lab_settings.endpoints)
    running.start(1)
    return running


def attached(lab: Lab) -> Attachment:
    return Attachment(lab.locate, lab.build, record_mark(lab.record))


def test_the_lab_is_looked_up_once_while_its_record_is_unchanged(lab: Lab) -> None:
    attachment = attached(lab)
    first = attachment.current()
    for _ in range(5):
        assert attachment.current() is first
    assert len(lab.looks) == 1 and lab.builds == 1


def test_a_restarted_lab_is_looked_up_again_and_rewired(lab: Lab) -> None:
    attachment = attached(lab)
    first = attachment.current()
    lab.start(2)
    second = attachment.current()
    assert second is not first and lab.builds == 2 and len(lab.looks) == 2
    assert attachment.current() is second and len(lab.looks) == 2


def test_a_lab_that_is_down_is_looked_up_at_every_request(lab: Lab) -> None:
    attachment = attached(lab)
    attachment.current()
    lab.stop()
    for expected in (2, 3):
        with pytest.raises(Exception, match="not running"):
            attachment.current()
        assert len(lab.looks) == expected
    lab.start(2)
    attachment.current()
    assert lab.builds == 2


def test_the_check_after_a_call_without_answer_looks_afresh(lab: Lab) -> None:
    """A killed lab leaves its record as it was: the check does not trust the mark, and once
    it found the lab gone the next request looks again too."""
    attachment = attached(lab)
    attachment.current()
    assert attachment.check_running() is None
    assert len(lab.looks) == 2
    lab.kill()
    assert attachment.check_running() is not None
    with pytest.raises(Exception, match="not running"):
        attachment.current()  # the record is unchanged, yet looked at again
    assert len(lab.looks) == 4


def test_the_lab_down_check_runs_off_the_event_loop(lab: Lab) -> None:
    proxy = GatewayProxy(attached(lab))
    proxy.attachment.current()  # located once; the record stays as it is
    lab.looks.clear()
    loop_threads: list[threading.Thread] = []

    async def call() -> Any:
        loop_threads.append(threading.current_thread())
        lab.kill()  # the call gets no answer, and the lab is gone by the check
        return await proxy.call_tool("list_docs", {})

    result = anyio.run(call)
    assert result.is_error and "`lab up`" in result.content[0].text
    assert len(lab.looks) == 1  # only the lab-down check: the record had not changed
    assert loop_threads[0] not in lab.looks, "a look at the lab ran on the event loop"


def test_the_gateway_that_finds_its_lab_marks_the_runtime_record(
    lab_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_settings.home.mkdir(parents=True, exist_ok=True)
    lab_settings.runtime_file.write_text("{}")
    looks: list[int] = []

    def locate() -> tuple[str, Endpoints]:
        looks.append(1)
        return lab_settings.runtime_file.read_text(), lab_settings.endpoints

    plan = SignInPlan(mode=HEADLESS, username="u", password="p", opener=lambda url: None)
    gateway = Gateway.find_lab(lab_settings, locate, plan)
    try:
        for _ in range(4):
            gateway.proxy.attachment.current()
        assert looks == [1]
    finally:
        gateway.close()
