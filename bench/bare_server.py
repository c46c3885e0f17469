"""The baseline: a bare Starlette endpoint served the same way as the lab's parts (uvicorn)."""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.serving import bind_socket, uvicorn_config


async def ok(request):  # type: ignore[no-untyped-def]
    return JSONResponse({"ok": True})


def main() -> None:
    port = int(sys.argv[1])
    app = Starlette(routes=[Route("/", ok)])
    sock = bind_socket("127.0.0.1", port)
    asyncio.run(uvicorn.Server(uvicorn_config(app)).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
