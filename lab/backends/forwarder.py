"""Keeps ``kubectl port-forward`` processes alive: a PDP restart must not end a learner's lab.

``kubectl port-forward svc/lab-pdp`` picks one pod when it starts and stays pinned to it. When
that pod goes away (``set_providers`` restarts the PDP, as one restarts Athenz's ZTS after a
providers change) kubectl either exits ("lost connection to pod") or, depending on the version,
keeps listening while every connection fails. The supervisor here covers both: it restarts a
forward whose process exited, and one whose health URL (probed *through* the forward) failed
twice in a row. ``SIGHUP`` re-establishes every forward at once (the backend sends it right
after it restarted the PDP, so the learner does not wait for a probe); ``SIGTERM`` stops it and
its kubectl children.

Run detached by the kind backend (``--context`` mode) and by ``lab room up``/``lab room forward``:
``python -m lab.backends.forwarder SPEC.json`` where the spec lists ``{name, argv, probe}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("lab.backends.forwarder")

#: Seconds between supervision passes, failed probes before a restart, probe timeout.
PROBE_EVERY_S = 3.0
FAILURES_BEFORE_RESTART = 2
PROBE_TIMEOUT_S = 2.0
#: Probes run side by side, at most this many at once.
PROBE_WORKERS = 16
#: A forward that exits again within this many seconds waits this long before the next try.
RESTART_BACKOFF_S = 1.0


@dataclass(frozen=True)
class ForwardSpec:
    """One ``kubectl port-forward`` and the URL that answers through it when it works."""

    name: str
    argv: tuple[str, ...]
    probe: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "argv": list(self.argv), "probe": self.probe}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForwardSpec:
        return cls(str(data["name"]), tuple(str(a) for a in data["argv"]), data.get("probe"))


class Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


Spawn = Callable[[ForwardSpec], Process]
Probe = Callable[[str], bool]


def http_probe(url: str) -> bool:
    """Any HTTP answer below 500 means the forward carries traffic to a live pod."""
    import httpx

    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code < 500
    except httpx.HTTPError:
        return False


def spawn_logged(log_path: Path) -> Spawn:
    def spawn(spec: ForwardSpec) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                list(spec.argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    return spawn


@dataclass
class _Running:
    spec: ForwardSpec
    process: Process
    started: float
    failures: int = 0


@dataclass
class Supervisor:
    """Starts each forward, then on every :meth:`tick` restarts the ones that died or stopped
    carrying traffic. Pure bookkeeping around ``spawn``/``probe``, so tests drive it with fakes."""

    specs: Sequence[ForwardSpec]
    spawn: Spawn
    probe: Probe = http_probe
    clock: Callable[[], float] = time.monotonic
    failures_before_restart: int = FAILURES_BEFORE_RESTART
    backoff_s: float = RESTART_BACKOFF_S
    running: dict[str, _Running] = field(default_factory=dict)
    restarts: list[str] = field(default_factory=list)

    def start(self) -> None:
        for spec in self.specs:
            self._start(spec)

    def _start(self, spec: ForwardSpec) -> None:
        self.running[spec.name] = _Running(spec, self.spawn(spec), self.clock())

    def _restart(self, entry: _Running, why: str) -> None:
        log.warning("re-establishing forward %s: %s", entry.spec.name, why)
        _stop(entry.process)
        self.restarts.append(entry.spec.name)
        self._start(entry.spec)

    def tick(self) -> list[str]:
        """One pass; returns the names of the forwards it re-established."""
        before = len(self.restarts)
        entries = list(self.running.values())
        codes = {entry.spec.name: entry.process.poll() for entry in entries}
        answers = self._probe_all([e for e in entries if codes[e.spec.name] is None])
        for entry in entries:
            code = codes[entry.spec.name]
            if code is not None:
                if self.clock() - entry.started < self.backoff_s:
                    continue  # it died right away (pod not ready yet): try on a later pass
                self._restart(entry, f"kubectl exited with {code}")
                continue
            if entry.spec.probe is None:
                continue
            if answers[entry.spec.name]:
                entry.failures = 0
                continue
            entry.failures += 1
            if entry.failures >= self.failures_before_restart:
                self._restart(entry, f"{entry.spec.probe} failed {entry.failures} times")
        return self.restarts[before:]

    def _probe_all(self, entries: Sequence[_Running]) -> dict[str, bool]:
        """Probe side by side: a room's learners reach step 10 (a PDP restart) together, and
        each dead forward's probe waits for its timeout."""
        probed = [e for e in entries if e.spec.probe is not None]
        if not probed:
            return {}
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(probed))) as pool:
            results = pool.map(lambda e: self.probe(str(e.spec.probe)), probed)
            return {entry.spec.name: ok for entry, ok in zip(probed, results, strict=True)}

    def restart_all(self, why: str = "asked to (SIGHUP)") -> None:
        for entry in list(self.running.values()):
            self._restart(entry, why)

    def stop(self) -> None:
        for entry in self.running.values():
            _stop(entry.process)
        self.running.clear()


def _stop(process: Process) -> None:
    with contextlib.suppress(OSError):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    process.kill()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Spec files and the detached process


def write_spec(path: Path, specs: Sequence[ForwardSpec]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([s.as_dict() for s in specs], indent=2))


def read_spec(path: Path) -> list[ForwardSpec]:
    return [ForwardSpec.from_dict(item) for item in json.loads(path.read_text())]


def start_detached(spec_path: Path, log_path: Path, python: str | None = None) -> int:
    """Start ``python -m lab.backends.forwarder spec_path`` in its own session; its pid."""
    import sys

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [python or sys.executable, "-m", "lab.backends.forwarder", str(spec_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid


def run(spec_path: Path, stop: threading.Event, every_s: float = PROBE_EVERY_S) -> None:
    """Supervise the spec's forwards until ``stop`` is set; SIGHUP restarts them all at once."""
    log_path = spec_path.with_suffix(".kubectl.log")
    supervisor = Supervisor(read_spec(spec_path), spawn_logged(log_path))
    wake, hangup = threading.Event(), threading.Event()

    def on_hangup(*_: object) -> None:
        hangup.set()
        wake.set()

    def on_stop(*_: object) -> None:
        stop.set()
        wake.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, on_hangup)
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
    supervisor.start()
    try:
        while not stop.is_set():
            wake.wait(every_s)
            wake.clear()
            if stop.is_set():
                break
            if hangup.is_set():
                hangup.clear()
                supervisor.restart_all()
            supervisor.tick()
    finally:
        supervisor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.backends.forwarder")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a probe line every 3 s per forward
    run(args.spec, threading.Event())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
