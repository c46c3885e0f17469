"""An acknowledged ZMS write survives kill -9 of the PDP process (WAL + synchronous=FULL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey
from lab.pdp.store import Store

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from dataclasses import replace
    from pathlib import Path
    import uvicorn
    from lab.config import Settings
    from lab.pdp.app import create_app
    from lab.serving import bind_socket, uvicorn_config

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    ports = dict(Settings().ports, zms=port, zts=port)
    settings = replace(Settings(), home=Path(sys.argv[1]), ports=ports)
    server = uvicorn.Server(uvicorn_config(create_app(settings)))
    print(port, flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    """
)


def test_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        zms = f"http://127.0.0.1:{port}/zms/v1"
        key = SigningKey.load_or_create(home / "keys" / f"{ADMIN_PRINCIPAL}.pem")
        headers = {"Authorization": "Bearer " + make_admin_assertion(ADMIN_PRINCIPAL, key, zms)}
        with httpx.Client(timeout=10) as http:
            for _ in range(100):
                try:
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    continue
            response = http.post(zms + "/domain", json={"name": "durable"}, headers=headers)
        assert response.status_code == 200, response.text
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert "durable" in Store(home / "pdp.sqlite3").list_domains()
