"""kill -9 of the PDP process in the middle of a stream of ZMS writes loses nothing acknowledged.

tests/pdp/test_kill9.py shows one acknowledged write surviving; here several writers stream
member adds, the process is SIGKILLed while requests are in flight, and after a restart on the
same ``$LAB_HOME`` every acknowledged write is served again and SQLite's integrity check passes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey
from tests.pdp.test_kill9 import CHILD

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 4
ACKS_BEFORE_KILL = 60


@contextmanager
def pdp_process(home: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The PDP alone in a child process on a free port; yields (process, base URL)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert child.stdout is not None
        base = f"http://127.0.0.1:{int(child.stdout.readline())}"
        wait_healthy(base)
        yield child, base
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def wait_healthy(base: str) -> None:
    with httpx.Client(timeout=2) as http:
        for _ in range(500):
            try:
                if http.get(f"{base}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            threading.Event().wait(0.02)
    raise AssertionError(f"PDP at {base} never became healthy")


class Zms:
    def __init__(self, home: Path, base: str) -> None:
        self.url = f"{base}/zms/v1"
        self.key = SigningKey.load_or_create(home / "keys" / f"{ADMIN_PRINCIPAL}.pem")

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": "Bearer " + make_admin_assertion(ADMIN_PRINCIPAL, self.key, self.url)
        }

    def put_member(self, http: httpx.Client, member: str) -> httpx.Response:
        return http.put(
            f"{self.url}/domain/stream/role/writers/member/{member}",
            json={"memberName": member, "roleName": "writers"},
            headers=self.headers(),
        )


def stream_writes(
    zms: Zms, writer: int, acknowledged: list[str], lock: threading.Lock, stop: threading.Event
) -> None:
    """Add members until the server dies; record a member only once its 2xx has arrived."""
    with httpx.Client(timeout=5) as http:
        n = 0
        while not stop.is_set():
            member = f"ai.w{writer}-{n}"
            n += 1
            try:
                response = zms.put_member(http, member)
            except httpx.TransportError:
                return  # the process is gone: this write was never acknowledged
            if response.status_code in (200, 204):
                with lock:
                    acknowledged.append(member)


def test_acknowledged_writes_survive_kill_9_during_a_write_stream(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    acknowledged: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    with pdp_process(home) as (child, base):
        zms = Zms(home, base)
        with httpx.Client(timeout=10) as http:
            assert (
                http.post(
                    f"{zms.url}/domain", json={"name": "stream"}, headers=zms.headers()
                ).status_code
                == 200
            )
            put = http.put(
                f"{zms.url}/domain/stream/role/writers",
                json={"name": "stream:role.writers"},
                headers=zms.headers(),
            )
            assert put.status_code in (200, 204), put.text
        threads = [
            threading.Thread(target=stream_writes, args=(zms, w, acknowledged, lock, stop))
            for w in range(WRITERS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
        while len(acknowledged) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        os.kill(child.pid, signal.SIGKILL)  # writes are in flight right now
        child.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= ACKS_BEFORE_KILL

    with sqlite3.connect(home / "pdp.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pdp_process(home) as (_, base), httpx.Client(timeout=10) as http:
        zms = Zms(home, base)
        role = http.get(f"{zms.url}/domain/stream/role/writers", headers=zms.headers())
        assert role.status_code == 200, role.text
        present = {m["memberName"] for m in role.json().get("roleMembers", [])}
    missing = sorted(set(acknowledged) - present)
    assert missing == [], f"{len(missing)} acknowledged writes lost: {missing[:10]}"
