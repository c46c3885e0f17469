"""What a running lab exposes: sockets on loopback only, private keys 0600, no tokens in logs.

Runs the real ``lab up`` (tests/stack.py) on free ports, then ``lab verify`` (all steps, the
tutorial's whole chain) and one more agent chain whose tokens are recorded here, and inspects the
runtime process and ``$LAB_HOME`` from outside, as an auditor would.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.agent import Recorder, run_prompt
from tests.stack import Stack, embedded_stack

TCP_LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN
JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("exposure") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def issued_tokens(stack: Stack) -> set[str]:
    """Every token of a verify run (as the step engine captured them) and of one agent chain."""
    verify = stack.lab("verify", timeout=240)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]
    recorder = Recorder()
    result = run_prompt(
        stack.settings, stack.endpoints, "get docs", "idjag-learner", "password", recorder=recorder
    )
    # After step 13 the learner no longer holds docs-getter, so the tool call itself is refused;
    # the chain still signs in, gets an ID-JAG and an access token, which is what is checked.
    assert result.access is not None and result.access.token, result.message
    tokens = {t.value for e in recorder.exchanges for t in e.tokens}
    for chained in (result.id_jag, result.access):
        if chained is not None and chained.token:
            tokens.add(chained.token)
    captures = (stack.home / "captures.json").read_text()
    tokens |= set(JWT_SHAPED.findall(captures))
    return tokens


# ------------------------------------------------------------------------------ sockets


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            queue.extend(int(child) for child in task.read_text().split())
    return found


def socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed while we looked
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def parse_address(hex_address: str) -> tuple[str, int]:
    """/proc/net/tcp{,6} ``ADDR:PORT``: the address as 32-bit words in host order (little-endian
    here), the port big-endian."""
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port, 16)


def listening_sockets(pids: list[int]) -> list[tuple[str, int]]:
    inodes = socket_inodes(pids)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN and fields[9] in inodes:
                found.append(parse_address(fields[1]))
    return found


def test_every_server_of_the_runtime_listens_on_loopback_only(stack: Stack) -> None:
    runtime = json.loads((stack.home / "runtime.json").read_text())
    sockets = listening_sockets(process_tree(int(runtime["pid"])))

    assert sockets, "the runtime process holds no listening sockets"
    assert {port for _, port in sockets} == set(runtime["ports"].values())
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets


def test_parse_address_reads_proc_net_tcp_format() -> None:
    assert parse_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert parse_address("00000000:0050") == ("0.0.0.0", 80)
    assert parse_address("00000000000000000000000001000000:0016") == ("::1", 22)
    assert socket.inet_aton("127.0.0.1") == bytes.fromhex("7F000001")


# ------------------------------------------------------------------------------ keys and logs


def test_private_keys_are_readable_by_the_owner_only(stack: Stack, issued_tokens: set[str]) -> None:
    # After a whole verify run, so keys made on demand by the steps are included too.
    private = [p for p in (stack.home / "keys").glob("*.pem") if not p.name.endswith(".pub.pem")]

    assert len(private) >= 5, sorted(p.name for p in private)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in private}
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}


def test_logs_never_contain_an_issued_token(stack: Stack, issued_tokens: set[str]) -> None:
    logs = {p.name: p.read_text(errors="replace") for p in (stack.home / "logs").iterdir()}
    assert {"pdp.log", "idp.log", "mcpserver.log", "docapi.log"} <= set(logs)
    assert len(issued_tokens) >= 5

    leaked = {
        name: token[:16] + "…"
        for token in issued_tokens
        for name, text in logs.items()
        if token in text or token.rsplit(".", 1)[0] in text  # a token minus its signature counts
    }
    assert leaked == {}
    shaped = {name: JWT_SHAPED.findall(text)[:1] for name, text in logs.items()}
    assert {name: found for name, found in shaped.items() if found} == {}
