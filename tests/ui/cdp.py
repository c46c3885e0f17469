"""A headless Chromium driven over the Chrome DevTools Protocol (a websocket per page).

Small on purpose: launch Debian's chromium with the network to everything but loopback off,
evaluate JavaScript in the page, click, wait, take a screenshot. No browser download.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

from tests.chromium import BASE_FLAGS, chromium_path

FLAGS = (
    *BASE_FLAGS,
    "--disable-sync",
    "--window-size=1400,1000",
    # Network off but loopback: names resolve to nothing and every proxied request goes to a
    # closed port; Chromium never sends loopback requests through a proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--remote-debugging-port=0",
)


class Browser:
    """One Chromium with one page; :meth:`close` ends the process it started."""

    def __init__(self, url: str, profile: Path) -> None:
        self.process = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._devtools_port(profile / "DevToolsActivePort")
        target = self._page_target(port)
        self.ws = websocket.create_connection(target, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def _devtools_port(self, marker: Path, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().splitlines()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def _page_target(self, port: int, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise RuntimeError("chromium opened no page")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30) -> Any:
        """Poll ``expression`` until it is truthy; its value.

        While the page is still loading, ``document.body`` and friends may not exist yet: an
        exception then means "not yet", and only the last try after the timeout reports it."""
        tolerant = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.eval(tolerant)
            if value:
                return value
            time.sleep(0.2)
        self.eval(expression)  # raises with the page's own error, if it has one
        raise AssertionError(f"timed out after {timeout_s} s waiting for: {expression}")

    def click(self, selector: str) -> None:
        found = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.focus(); e.click(); return true; })()"
        )
        assert found, f"nothing matches {selector}"

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
