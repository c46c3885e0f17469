"""``lab.gateway.changes.ToolChanges`` in-process: who is told, and how (the end-to-end runs with
the official SDK client are in ``test_tools_list_changed.py``)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from lab.gateway import changes
from lab.gateway.changes import ToolChanges


class FakeSession:
    def __init__(self, protocol_version: str, broken: bool = False, stuck: bool = False) -> None:
        self.protocol_version = protocol_version
        self.broken = broken
        self.stuck = stuck
        self.told = 0

    async def send_tool_list_changed(self) -> None:
        if self.broken:
            raise anyio.ClosedResourceError()
        if self.stuck:
            await anyio.sleep_forever()
        self.told += 1


async def test_handshake_sessions_are_told_on_their_channel_modern_ones_only_by_listen() -> None:
    tool_changes = ToolChanges()
    events: list[Any] = []
    tool_changes.bus.subscribe(events.append)
    legacy, modern = FakeSession("2025-11-25"), FakeSession("2026-07-28")
    tool_changes.listed(legacy, "a")  # type: ignore[arg-type]
    tool_changes.listed(modern, "b")  # type: ignore[arg-type]
    tool_changes.listed(legacy, "a")  # type: ignore[arg-type]  # listed twice: told once
    await tool_changes.announce()
    assert (legacy.told, modern.told) == (1, 0)
    assert [type(event).__name__ for event in events] == ["ToolsListChanged"]


async def test_an_ended_or_stuck_session_is_forgotten_and_holds_up_no_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changes, "SEND_TIMEOUT_S", 0.1)
    tool_changes = ToolChanges()
    ended, stuck, alive = (
        FakeSession("2025-06-18", broken=True),
        FakeSession("2025-06-18", stuck=True),
        FakeSession("2025-06-18"),
    )
    for key, session in (("ended", ended), ("stuck", stuck), ("alive", alive)):
        tool_changes.listed(session, key)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        await tool_changes.announce()
        await tool_changes.announce()
    assert alive.told == 2 and list(tool_changes._sessions) == ["alive"]


def test_the_sessions_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changes, "MAX_SESSIONS", 3)
    tool_changes = ToolChanges()
    for n in range(10):
        tool_changes.listed(FakeSession("2025-11-25"), str(n))  # type: ignore[arg-type]
    assert list(tool_changes._sessions) == ["7", "8", "9"]
