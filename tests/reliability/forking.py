"""Run work in forked children with every wait bounded (a hang fails the test, never stalls it).

A forked child inherits the parent's in-process lab (served by threads that do not exist in the
child) and the agent's process-wide pools; it speaks to the parent's lab as any other process.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from typing import Any

import pytest

#: No child may take longer than this, whatever it does.
CHILD_LIMIT_S = 20.0


class Child:
    def __init__(self, pid: int, read_end: int) -> None:
        self.pid, self.read_end = pid, read_end

    def result(self, deadline: float) -> Any:
        """The child's JSON answer; fails (and kills it) past ``deadline`` (monotonic)."""
        chunks: list[bytes] = []
        poller = select.poll()  # not select(): a long test run holds fds past FD_SETSIZE
        poller.register(self.read_end, select.POLLIN)
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not poller.poll(left * 1000):
                    break
                chunk = os.read(self.read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.read_end)
        finished, _ = os.waitpid(self.pid, os.WNOHANG)
        while finished == 0 and time.monotonic() < deadline + 2:  # exiting after its answer
            time.sleep(0.01)
            finished, _ = os.waitpid(self.pid, os.WNOHANG)
        if finished == 0:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
            pytest.fail(f"a forked child (pid {self.pid}) did not finish in time")
        answer = json.loads(b"".join(chunks))
        assert "error" not in answer, answer["error"]
        return answer["value"]


def start_child(work: Callable[[], Any]) -> Child:
    """Fork; the child runs ``work()`` and sends its JSON answer (or its error) back."""
    if not hasattr(os, "fork"):
        if os.environ.get("CI") == "true":
            pytest.fail("os.fork is missing on a CI machine")
        pytest.skip("this platform has no fork")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            answer = json.dumps({"value": work()})
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer, code = json.dumps({"error": repr(exc)}), 1
        data = answer.encode()
        while data:
            data = data[os.write(write_end, data) :]
        os._exit(code)
    os.close(write_end)
    return Child(pid, read_end)


def in_forked_child(work: Callable[[], Any], limit_s: float = CHILD_LIMIT_S) -> Any:
    return start_child(work).result(time.monotonic() + limit_s)
