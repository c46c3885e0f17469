"""The PDP: Athenz-style ZMS (``/zms/v1``) and ZTS (``/zts/v1``) in one Starlette app.

The embedded backend serves this same app object on the ZMS and the ZTS socket; the kind
backend runs it in a container. Nothing here depends on which.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lab.config import Settings
from lab.oauth.starlette import exception_handlers, harden
from lab.pdp.core import Pdp
from lab.pdp.zms.routes import build_routes as zms_routes
from lab.pdp.zts.routes import build_routes as zts_routes

log = logging.getLogger("lab.pdp")


def create_app(settings: Settings, baseline: Path | None = None) -> Starlette:
    """Open (or create and seed) the store, load keys and providers once, build the routes."""
    pdp = Pdp.open(settings, baseline)

    async def healthz(request: Request) -> Response:
        # Read the store from a worker thread: "ok" means a token request could be served now.
        await run_in_threadpool(pdp.store.get_meta, "seeded")
        return JSONResponse({"status": "ok", "part": "pdp"})

    # Starlette tries routes in order and every token request is the first ZTS route: ZTS
    # first saves matching ~30 ZMS patterns per token request (no two paths overlap).
    app = Starlette(
        routes=[*zts_routes(pdp), Route("/healthz", healthz, methods=["GET"]), *zms_routes(pdp)],
        exception_handlers=exception_handlers(),
    )
    harden(app, settings)
    app.state.pdp = pdp
    return app
