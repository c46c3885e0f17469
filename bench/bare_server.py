"""The like-for-like baseline: a bare POST endpoint on the same server stack as the token endpoint.

Same as ``/zts/v1/oauth2/token`` up to the work itself: uvicorn on a pre-bound socket with the
lab's config, a Starlette route that reads the form with the lab's ``read_form``, hands the work
to the thread pool with ``run_in_threadpool``, and answers JSON with the same no-store headers.
The work is exactly one ES256 signature of a small claim set (a token endpoint does at least that
plus its checks), so ``token endpoint / bare`` says how much the checks cost, not the stack.

    python bench/bare_server.py PORT [--on-loop]

Two baselines, both shown by ``make bench``: the thread-pool one (the default; the issue's "bare
POST that does one signature in the same thread-pool stack") and ``--on-loop``, which signs on
the event loop as the token endpoint now does when nothing blocks (docs/dev/performance.md,
"Token endpoints, fifth pass"): like for like with the endpoint's path, without the thread
pool's hand-off (~80 µs of CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from lab.oauth.jose import SigningKey, generate_private_key, key_id, new_jti  # noqa: E402
from lab.oauth.starlette import NO_STORE, read_form  # noqa: E402
from lab.serving import bind_socket, uvicorn_config  # noqa: E402


def create_app(on_loop: bool = False) -> Starlette:
    """The baseline app; ``on_loop`` signs on the event loop instead of in the thread pool
    (the token endpoint decides on the loop when nothing blocks: `bench/token_micro.py
    --asgi` shows both baselines, the thread pool's hand-off being ~80 µs of CPU)."""
    private = generate_private_key("ES256")
    key = SigningKey(private, key_id(private))

    def sign(form: dict[str, str]) -> dict[str, Any]:
        issued = int(time.time())
        claims = {
            "iss": "bare",
            "sub": form.get("grant_type", ""),
            "iat": issued,
            "exp": issued + 60,
            "jti": new_jti(),
        }
        token = key.sign(claims, typ="at+jwt")
        return {"access_token": token, "token_type": "Bearer", "expires_in": 60}

    async def token(request: Request) -> Response:
        form = await read_form(request)
        body = sign(form) if on_loop else await run_in_threadpool(sign, form)
        return JSONResponse(body, headers=NO_STORE)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", token, methods=["POST"]), Route("/", health)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="the bare-POST baseline of bench/load.py")
    parser.add_argument("port", type=int)
    parser.add_argument(
        "--on-loop",
        action="store_true",
        help="sign on the event loop (as the token endpoint does when nothing blocks), "
        "not in the thread pool",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sock = bind_socket("127.0.0.1", args.port)
    app = create_app(on_loop=args.on_loop)
    asyncio.run(uvicorn.Server(uvicorn_config(app)).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
