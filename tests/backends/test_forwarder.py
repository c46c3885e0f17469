"""lab.backends.forwarder: forwards pinned to a restarted PDP pod are re-established."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.backends import forwarder, kind
from lab.backends.forwarder import ForwardSpec, Supervisor
from lab.config import Settings

PDP = ForwardSpec("ns/lab-pdp", ("kubectl", "port-forward", "svc/lab-pdp"), "http://h/healthz")
DOCS = ForwardSpec("ns/lab-docapi", ("kubectl", "port-forward", "svc/lab-docapi"), None)


class FakeProcess:
    """A kubectl stand-in: running until ``die()``; records being terminated."""

    count = 0

    def __init__(self, spec: ForwardSpec) -> None:
        FakeProcess.count += 1
        self.pid = 1000 + FakeProcess.count
        self.spec = spec
        self.code: int | None = None
        self.terminated = False

    def poll(self) -> int | None:
        return self.code

    def die(self, code: int = 1) -> None:
        self.code = code

    def terminate(self) -> None:
        self.terminated = True
        self.code = -15

    def wait(self, timeout: float | None = None) -> int:
        return self.code or 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(probe_ok: dict[str, bool] | None = None) -> tuple[Supervisor, list[FakeProcess], Clock]:
    spawned: list[FakeProcess] = []
    clock = Clock()

    def spawn(spec: ForwardSpec) -> FakeProcess:
        process = FakeProcess(spec)
        spawned.append(process)
        return process

    answers = probe_ok if probe_ok is not None else {}
    supervisor = Supervisor(
        [PDP, DOCS], spawn, probe=lambda url: answers.get(url, True), clock=clock, backoff_s=1.0
    )
    return supervisor, spawned, clock


def test_a_forward_whose_kubectl_died_is_re_established() -> None:
    """kubectl exits with "lost connection to pod" when the PDP restarts: start it again."""
    supervisor, spawned, clock = make()
    supervisor.start()
    first_pdp = spawned[0]
    clock.now += 5
    first_pdp.die()
    assert supervisor.tick() == ["ns/lab-pdp"]
    assert len(spawned) == 3
    assert spawned[-1].spec == PDP and supervisor.running["ns/lab-pdp"].process is spawned[-1]
    assert supervisor.tick() == []  # the new one is alive: nothing more to do


def test_a_forward_that_stops_carrying_traffic_is_restarted_after_two_failed_probes() -> None:
    """Some kubectl versions keep listening to a dead pod: the probe through it notices."""
    answers = {"http://h/healthz": False}
    supervisor, spawned, clock = make(answers)
    supervisor.start()
    clock.now += 5
    assert supervisor.tick() == []  # one failure may be a blip
    assert supervisor.tick() == ["ns/lab-pdp"]
    assert spawned[0].terminated  # the stale kubectl is stopped, not left listening
    answers["http://h/healthz"] = True
    assert supervisor.tick() == []


def test_a_forward_that_dies_at_once_waits_for_the_backoff() -> None:
    supervisor, spawned, clock = make()
    supervisor.start()
    spawned[0].die()
    assert supervisor.tick() == []  # started under a second ago: the pod may not be ready
    clock.now += 2
    assert supervisor.tick() == ["ns/lab-pdp"]


def test_restart_all_replaces_every_forward_and_stop_ends_them() -> None:
    supervisor, spawned, _clock = make()
    supervisor.start()
    supervisor.restart_all()
    assert [p.terminated for p in spawned[:2]] == [True, True]
    assert len(spawned) == 4
    supervisor.stop()
    assert all(p.terminated for p in spawned) and supervisor.running == {}


def test_spec_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    forwarder.write_spec(path, [PDP, DOCS])
    assert forwarder.read_spec(path) == [PDP, DOCS]


def test_context_mode_forwards_probe_each_service_through_the_forward() -> None:
    settings = Settings(host="192.0.2.10")
    specs = kind.forward_specs(settings, "ctx", "team-a")
    assert [s.name for s in specs] == [
        "team-a/lab-pdp",
        "team-a/lab-docapi",
        "team-a/lab-mcpserver",
    ]
    assert specs[0].argv[-3:] == ("svc/lab-pdp", "4443", "8443")
    assert "--address" in specs[0].argv and "192.0.2.10" in specs[0].argv
    assert specs[0].probe == "http://192.0.2.10:8443/healthz"
    assert specs[2].probe == "http://192.0.2.10:8101/healthz"


def test_detached_supervisor_re_forwards_a_dead_process_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """The real entry point: a 'kubectl' that exits is started again; SIGTERM ends it all."""
    starts = tmp_path / "starts.txt"
    fake_kubectl = [
        sys.executable,
        "-c",
        f"open({str(starts)!r}, 'a').write('x'); import time; time.sleep(0.2)",
    ]
    spec = tmp_path / "spec.json"
    forwarder.write_spec(spec, [ForwardSpec("ns/lab-pdp", tuple(fake_kubectl), None)])
    env = {**os.environ, "PYTHONPATH": str(Path(kind.__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lab.backends import forwarder as f; import sys, "
            "threading; f.PROBE_EVERY_S = 0.3; f.RESTART_BACKOFF_S = 0.1; "
            "f.run(__import__('pathlib').Path(sys.argv[1]), threading.Event(), 0.3)",
            str(spec),
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline and len(starts.read_text() if starts.exists() else "") < 3
        ):
            time.sleep(0.1)
        assert len(starts.read_text()) >= 3  # started, died, re-established (at least twice)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_signal_forwarders_reaches_the_recorded_supervisor(tmp_path: Path) -> None:
    (tmp_path / "kind-port-forwards.json").write_text(json.dumps([os.getpid()]))
    received: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda sig, _frame: received.append(sig))
    try:
        assert kind.signal_forwarders(tmp_path) is True
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert received == [signal.SIGHUP]


def test_signal_forwarders_without_a_record_reports_none(tmp_path: Path) -> None:
    assert kind.signal_forwarders(tmp_path) is False


@pytest.mark.parametrize("status,expected", [(200, True), (404, True), (502, False)])
def test_http_probe_counts_any_answer_below_500_as_carrying(
    status: int, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setattr(httpx, "get", lambda url, timeout: httpx.Response(status))
    assert forwarder.http_probe("http://h/healthz") is expected


def test_probes_run_side_by_side_so_one_dead_forward_does_not_hold_up_the_others() -> None:
    """Two probes that each wait for the other: only side-by-side probing lets both answer."""
    import threading

    both_started = threading.Barrier(2, timeout=5)

    def probe(url: str) -> bool:
        try:
            both_started.wait()
        except threading.BrokenBarrierError:
            return False
        return True

    specs = [
        ForwardSpec("a/lab-pdp", ("kubectl",), "http://a/healthz"),
        ForwardSpec("b/lab-pdp", ("kubectl",), "http://b/healthz"),
    ]
    supervisor = Supervisor(specs, FakeProcess, probe=probe, failures_before_restart=1)
    supervisor.start()
    assert supervisor.tick() == []  # both probes answered: nothing restarted
