"""The document API: the final resource server behind the MCP server.

Two instances share one SQLite store: the unprotected one (step 1's baseline) and the
protected one, which accepts only PDP access tokens for audience ``api`` (RFC 9068) and then
decides locally, Athenz ZPE style, from the PDP's signed policy data: HTTP method → action
(``get``/``post``/``delete``) on resource ``api:docs`` for the token's roles (contracts §6).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.config import ADMIN_PRINCIPAL, API_DOMAIN, Settings
from lab.docapi.openapi import docapi_openapi
from lab.docapi.store import Doc, DocStore
from lab.heldkeys import HeldKeys, verify_on_loop
from lab.oauth.admin import bearer_token
from lab.oauth.errors import InsufficientScope, InvalidRequest, MissingToken, NotFound
from lab.oauth.jose import JwksCache
from lab.oauth.resource_server import (
    PolicyCache,
    caller_summary,
    decide_locally,
    policy_held,
    verify_access_token,
    verify_admin_request,
)
from lab.oauth.starlette import exception_handlers, harden, json_response, read_json
from lab.oauth.text import checked_text
from lab.policy.signed import verify_signed_policy_data

log = logging.getLogger("lab.docapi")

RESOURCE = f"{API_DOMAIN}:docs"
ACTIONS = {"GET": "get", "HEAD": "get", "POST": "post", "DELETE": "delete"}
MAX_NAME_CHARS = 200
MAX_CONTENT_CHARS = 10_000
MAX_DOC_ID = 2**53  # keeps ids JSON-safe and inside SQLite's integer range

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class Guard:
    """Authentication and local policy for the protected instance (None = unprotected)."""

    def __init__(self, settings: Settings) -> None:
        endpoints = settings.endpoints
        self.issuer = endpoints.zts
        self.jwks = HeldKeys(endpoints.zts_jwks)
        self.policy = PolicyCache(
            endpoints.zts,
            API_DOMAIN,
            self.jwks,
            verify=verify_signed_policy_data,
            refresh_s=settings.policy_refresh_s,
        )

    def authenticate(self, keys: JwksCache, token: str | None) -> dict[str, Any]:
        """Return the accepted token's claims or raise 401 (RFC 6750 §3.1). Blocking unless
        ``keys`` never fetches (lab.heldkeys)."""
        if token is None:
            # RFC 6750 §3.1: no credentials → challenge without an error code.
            raise MissingToken("this API needs an access token: Authorization: Bearer <token>")
        # RFC 9068 §4 / RFC 8707: only tokens for audience "api" — an MCP-audience token
        # passed through by the MCP server is refused here.
        return verify_access_token(token, keys, issuer=self.issuer, audience=API_DOMAIN)

    async def check(self, token: str | None, action: str) -> dict[str, Any]:
        """Authenticate, then decide locally (ZPE style); raise 401/403 or return the claims."""
        # On the loop when the PDP's key is held, else in a worker thread (lab.heldkeys).
        claims = await verify_on_loop(functools.partial(self.authenticate, token=token), self.jwks)
        # The policy is read without holding a worker thread while another request refreshes it.
        policy = await self.policy.current_async()
        decision = decide_locally(
            policy, claims, domain=API_DOMAIN, action=action, resource=RESOURCE
        )
        if not decision.allowed:
            log.info(
                "denied %s on %s for sub=%s jti=%s: %s",
                action,
                RESOURCE,
                claims.get("sub"),
                claims.get("jti"),
                decision.reason,
            )
            raise InsufficientScope(
                f"Token does not have '{action}' action on '{RESOURCE}' ({decision.reason})"
            )
        log.info(
            "allowed %s on %s for sub=%s client_id=%s jti=%s",
            action,
            RESOURCE,
            claims.get("sub"),
            claims.get("client_id"),
            claims.get("jti"),
        )
        return claims


def create_app(settings: Settings, protected: bool) -> Starlette:
    store = DocStore(settings.docapi_db)
    guard = Guard(settings) if protected else None
    base_url = (
        settings.endpoints.docapi_protected if protected else settings.endpoints.docapi_unprotected
    )
    admin_audience = _origin(base_url)
    admin_pub = settings.key_file(ADMIN_PRINCIPAL).with_suffix(".pub.pem")

    async def authorize(request: Request) -> dict[str, Any] | None:
        if guard is None:
            return None
        return await guard.check(bearer_token(request.headers), ACTIONS[request.method])

    def respond(data: dict[str, Any], caller: dict[str, Any] | None, status: int = 200) -> Response:
        if caller is not None:
            data = {**data, "caller": caller_summary(caller)}
        return json_response(data, status)

    async def list_docs(request: Request) -> Response:
        caller = await authorize(request)
        return respond({"docs": store.all()}, caller)

    async def create_doc(request: Request) -> Response:
        caller = await authorize(request)
        name, content = _doc_fields(await read_json(request))
        doc = store.create(name, content)
        log.info("created doc %s", doc["id"])
        return respond({"success": True, "doc": doc}, caller, 201)

    async def get_doc(request: Request) -> Response:
        caller = await authorize(request)
        doc = store.get(_doc_id(request))
        if doc is None:
            raise NotFound(f"no document with id {request.path_params['doc_id']}")
        return respond({"doc": doc}, caller)

    async def delete_doc(request: Request) -> Response:
        caller = await authorize(request)
        doc = store.delete(_doc_id(request))
        if doc is None:
            raise NotFound(f"no document with id {request.path_params['doc_id']}")
        log.info("deleted doc %s", doc["id"])
        return respond({"success": True, "doc": doc}, caller)

    async def require_admin(request: Request) -> None:
        await run_in_threadpool(verify_admin_request, request.headers, admin_pub, admin_audience)

    async def lab_reset(request: Request) -> Response:
        await require_admin(request)
        return json_response({"docs": store.reset()})

    async def lab_state(request: Request) -> Response:
        await require_admin(request)
        if request.method == "PUT":
            return json_response({"docs": store.replace_all(_state_docs(await read_json(request)))})
        return json_response({"docs": store.all()})

    async def healthz(request: Request) -> Response:
        # Answered from a worker thread, so a part whose threads are all stuck is not "ok";
        # the protected port also says whether it can get its policy data.
        ok, detail = await run_in_threadpool(guard.policy.health) if guard else (True, "none")
        body = {"status": "ok" if ok else "unavailable", "part": "docapi", "protected": protected}
        if guard is not None:
            body["policy"] = detail
        return json_response(body, 200 if ok else 503)

    async def policy_version(request: Request) -> Response:
        # Which signed policy data this server decides with; `Cache-Control: max-age=0` asks
        # for it to be revalidated with the PDP first: a step that changed the policy asks
        # this instead of sleeping past the refresh interval.
        assert guard is not None
        held = await policy_held(guard.policy, request.headers.get("cache-control"))
        return json_response({"part": "docapi", **held})

    async def openapi(request: Request) -> Response:
        return json_response(docapi_openapi(base_url, protected))

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/docs", list_docs, methods=["GET"]),
        Route("/api/docs", create_doc, methods=["POST"]),
        Route("/api/docs/{doc_id}", get_doc, methods=["GET"]),
        Route("/api/docs/{doc_id}", delete_doc, methods=["DELETE"]),
        Route("/lab/reset", lab_reset, methods=["POST"]),
        Route("/lab/state", lab_state, methods=["GET", "PUT"]),
    ]
    if guard is not None:
        routes.insert(1, Route("/healthz/policy", policy_version, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers=exception_handlers())
    # Both ports, the unprotected one too: it shares the store (DNS rebinding, issue #16).
    harden(app, settings)
    app.state.store = store
    return app


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _doc_id(request: Request) -> int:
    raw = request.path_params["doc_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or not 0 < int(raw) <= MAX_DOC_ID:
        raise InvalidRequest(f"document id must be a positive integer (got {raw[:40]!r})")
    return int(raw)


def _doc_fields(body: Any) -> tuple[str, str]:
    """Validate a new document: exactly ``name`` and ``content``, both bounded strings."""
    if not isinstance(body, dict):
        raise InvalidRequest('expected a JSON object {"name": ..., "content": ...}')
    unknown = sorted(set(body) - {"name", "content"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)[:200]}")
    # A one-line name and free text, each bounded and printable (lab.oauth.text).
    name = checked_text(body.get("name"), "name", max_chars=MAX_NAME_CHARS)
    content = checked_text(
        body.get("content"), "content", max_chars=MAX_CONTENT_CHARS, multiline=True, required=False
    )
    return name, content


def _state_docs(body: Any) -> list[Doc]:
    if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
        raise InvalidRequest('expected {"docs": [{"id": ..., "name": ..., "content": ...}, ...]}')
    docs: list[Doc] = []
    seen: set[int] = set()
    for entry in body["docs"]:
        if not isinstance(entry, dict):
            raise InvalidRequest("each document must be an object")
        doc_id = entry.get("id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, int) or not 0 < doc_id <= MAX_DOC_ID:
            raise InvalidRequest("each document needs a positive integer 'id'")
        if doc_id in seen:
            raise InvalidRequest(f"document id {doc_id} appears twice")
        seen.add(doc_id)
        name, content = _doc_fields({"name": entry.get("name"), "content": entry.get("content")})
        docs.append(Doc(id=doc_id, name=name, content=content))
    return docs
