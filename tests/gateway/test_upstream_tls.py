"""The gateway's upstream sessions share the agent's TLS context: each new context loads the CA
bundle (~25 ms of CPU, 70 ms on a busy machine; issue #21), once per tool call before."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from lab.agent.mcp_client import tls_context
from lab.gateway import upstream
from lab.gateway.upstream import Upstream


def test_upstream_clients_build_no_tls_context_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = tls_context()
    built: list[object] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        built.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    source = Upstream("http://127.0.0.1:9/mcp")

    async def open_three() -> None:
        for _ in range(3):
            client = source._http("token", {}, upstream._RefusalHook())
            await client.aclose()

    asyncio.run(open_three())
    assert built == []
    assert tls_context() is shared
