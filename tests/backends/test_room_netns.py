"""A room learner end to end without Docker: their pods in Linux network namespaces, a
non-loopback listen address, the forward supervisor, `lab room join` and `lab verify` on the
"laptop" — every step, including step 10's PDP restart behind a forward that dies with it.

The kube API calls (providers ConfigMap, rollout restart, progress ConfigMap) are done on the
emulation (tests/backends/netns/lab_cli.py); everything else is the shipped code. It needs root
and `ip netns`, changes this machine's network (a bridge and three namespaces, removed after),
and takes a minute or more, so on a laptop it runs only when asked: LAB_TEST_NETNS=1. Under
CI (`CI=true`) it runs whenever this machine can (root, `ip`, an address, a namespace can be
made): a skip there would hide the only end-to-end run of a room learner that CI can do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends.netns.room import NetnsRoom

HERE = Path(__file__).resolve().parent


def _listen_address() -> str | None:
    """This machine's first non-loopback IPv4 address (the instructor's listen address)."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return next((a for a in out.split() if "." in a and not a.startswith("127.")), None)


def _can_make_namespaces() -> bool:
    """Root, `ip`, an address to listen on, and the kernel lets us make a namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None or _listen_address() is None:
        return False
    probe = f"idjag-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return True


ASKED = os.environ.get("LAB_TEST_NETNS") == "1"
WANTED = ASKED or (os.environ.get("CI") == "true" and _can_make_namespaces())


@pytest.mark.slow
@pytest.mark.skipif(
    not WANTED,
    reason="set LAB_TEST_NETNS=1 (as root, with `ip netns`) to emulate a room learner's pods",
)
def test_a_room_learner_verifies_every_step_through_their_join_bundle(tmp_path: Path) -> None:
    listen = _listen_address()
    if os.geteuid() != 0 or shutil.which("ip") is None or listen is None:
        pytest.fail("LAB_TEST_NETNS=1 needs root, `ip` and a non-loopback IPv4 address")
    emulated = NetnsRoom(tmp_path / "room", listen)
    try:
        bundle = emulated.up()
        laptop = {**os.environ, "LAB_HOME": str(tmp_path / "laptop")}
        lab = Path(sys.executable).parent / "lab"
        joined = subprocess.run(
            [str(lab), "room", "join", str(bundle)], env=laptop, capture_output=True, text=True
        )
        assert joined.returncode == 0, joined.stdout + joined.stderr
        report = tmp_path / "verify.json"
        verify = subprocess.run(
            [sys.executable, str(HERE / "netns" / "lab_cli.py"), str(emulated.root),
             "--backend", "kind", "verify", "--json", str(report)],
            env=laptop, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
    finally:
        emulated.down()
    results = json.loads(report.read_text())
    assert [r["status"] for r in results] == ["passed"] * len(results)
    assert results[0]["served_by"]["backend"] == "kind"
    progress = json.loads((emulated.root / "progress.json").read_text())
    assert progress[-1][0] == results[-1]["number"]  # the status feed saw the last step
    restarts = (emulated.root / "forwards.log").read_text()
    assert "re-establishing forward idjag-learner-03/lab-pdp" in restarts  # step 10's restart
