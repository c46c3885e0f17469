"""``lab gateway --stdio`` driven byte by byte, as an AI client's transport drives it.

Every line the gateway writes on stdout is kept and must be a JSON-RPC message: stdout is the
protocol channel, and one stray line (a log record, a warning, rich output) breaks the client.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.gateway.conftest import gateway_command
from tests.stack import ROOT

PROTOCOL = "2025-06-18"
ANSWER_TIMEOUT_S = 60.0


class StdioGateway:
    def __init__(
        self,
        env: dict[str, str],
        *args: str,
        read_stdout: bool = True,
        headless: bool = True,
    ) -> None:
        sign_in = ("--headless",) if headless else ()
        self.process = subprocess.Popen(
            gateway_command("--stdio", *sign_in, *args),
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stdout: list[bytes] = []
        self.stderr = bytearray()
        if read_stdout:  # off: a client that never reads its end
            threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._next_id = 0

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for chunk in iter(lambda: self.process.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self.stderr.extend(chunk)

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps(message).encode() + b"\n")

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self._next_id

    def answer(self, id_: int, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        """The response to request ``id_`` (notifications and other answers on the way skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no answer to {id_} in {timeout}s; {self.describe()}"
                ) from None
            if line is None:
                raise AssertionError(f"stdout closed before answer {id_}; {self.describe()}")
            message = json.loads(line)
            if "id" in message and message["id"] == id_:
                return dict(message)

    def notification(self, method: str, timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        """The next notification ``method`` (other messages on the way skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {method} in {timeout}s; {self.describe()}") from None
            if line is None:
                raise AssertionError(f"stdout closed before {method}; {self.describe()}")
            message = json.loads(line)
            if message.get("method") == method:
                return dict(message)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.answer(self.request(method, params))

    def initialize(self, name: str = "wire-test") -> dict[str, Any]:
        opened = self.call(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": name, "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return opened

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float = ANSWER_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout)

    def wait_for_stderr(self, text: bytes, timeout: float = ANSWER_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{text!r} never reached stderr; {self.describe()}")
            time.sleep(0.05)

    def peak_memory_kb(self) -> int:
        """The gateway's peak resident memory (VmHWM), Linux only."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def describe(self) -> str:
        tail = bytes(self.stderr[-2000:]).decode(errors="replace")
        return f"exit={self.process.poll()} stderr tail:\n{tail}"

    def assert_stdout_is_only_json_rpc(self) -> None:
        for line in self.stdout:
            message = json.loads(line)  # a stray print or log line fails here
            assert message.get("jsonrpc") == "2.0", line[:200]

    def __enter__(self) -> StdioGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def lab_env(home: Path) -> dict[str, str]:
    """A stack environment for a home where no lab runs (free ports, embedded backend)."""
    from tests.stack import free_ports, stack_env

    home.mkdir(parents=True, exist_ok=True)
    return stack_env(home, free_ports())


def tool_text(answer: dict[str, Any]) -> str:
    return "\n".join(b.get("text", "") for b in answer["result"]["content"])


def run_ts_client(transport: str, *, env: dict[str, str], url: str = "") -> dict[str, Any]:
    """The TypeScript SDK client through the gateway; its JSON summary (tools, result, errors)."""
    import subprocess

    from tests import npmtools

    npmtools.require(npmtools.TS_CLIENT)  # with CI=true never skips
    script = Path(__file__).with_name("ts_gateway_client.mjs")
    settings = {
        "LAB_TS_CLIENT_DIR": str(npmtools.TS_CLIENT.package_dir),
        "LAB_GW_TRANSPORT": transport,
        "LAB_GW_URL": url,
        "LAB_GW_COMMAND": json.dumps(gateway_command("--stdio", "--headless")),
        "LAB_GW_ENV": json.dumps(env),
    }
    done = subprocess.run(
        [str(npmtools.node_bin_dir() / "node"), str(script)],
        cwd=ROOT,
        env=npmtools.node_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"ts client exited {done.returncode}: {done.stderr[-3000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
