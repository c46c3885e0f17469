"""The MCP server: an MCP resource server (official ``mcp`` SDK, Streamable HTTP at ``/mcp``).

It accepts only PDP access tokens whose audience is its own URL (RFC 8707; the MCP authorization
spec: tokens must be issued for the MCP server itself), optionally requires ``access`` on
``mcp:mcp`` (step 8), and for every tool call exchanges the caller's token at the PDP (RFC 8693)
for a token scoped to the one role that tool needs, authenticated as ``mcp.api-mcp``: the
exchange crosses from domain ``mcp`` into domain ``api``. Only that exchanged token reaches
the document API — the token the MCP server received is never forwarded (MCP authorization spec,
"Token Passthrough").
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from mcp.server import CacheHint, MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecuritySettings,
)
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AnyHttpUrl, Field, ValidationError
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lab.config import ADMIN_PRINCIPAL, API_DOMAIN, MCP_DOMAIN, MCP_PRINCIPAL, Settings
from lab.heldkeys import HeldKeys, verify_on_loop
from lab.mcpserver import envelope, hops
from lab.mcpserver.correlation import CorrelationContext, current_correlation_id
from lab.mcpserver.exchange import Exchanger, ExchangeRefused
from lab.mcpserver.extension import SERVER_EXTENSIONS, declare_in_legacy_initialize
from lab.mcpserver.readable import describe
from lab.oauth import http as lab_http
from lab.oauth.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    OAuthError,
)
from lab.oauth.jose import (
    JwksCache,
    SigningKey,
    VerifiedTokens,
    token_fingerprint,
    unverified_claims,
)
from lab.oauth.resource_server import (
    PolicyCache,
    decide_locally,
    policy_held,
    verify_access_token,
    verify_admin_request,
)
from lab.oauth.starlette import (
    exception_handlers,
    harden,
    http_error_code,
    json_response,
    read_json,
)
from lab.policy.signed import verify_signed_policy_data

log = logging.getLogger("lab.mcpserver")

ACCESS_RESOURCE = f"{MCP_DOMAIN}:mcp"
ACCESS_ACTION = "access"
MCP_PATH = "/mcp"

#: Tool → the one role its exchanged token is scoped to (contracts §7).
ROLE_GET = f"{API_DOMAIN}:role.docs-getter"
ROLE_POST = f"{API_DOMAIN}:role.docs-poster"
ROLE_DELETE = f"{API_DOMAIN}:role.docs-deleter"
#: The role step 8 grants access on mcp:mcp to (the tutorial's Runtime Proxy is configured with
#: the same scope, mcp:role.mcp-accessor).
ROLE_ACCESS = f"{MCP_DOMAIN}:role.mcp-accessor"
#: RFC 9728 scopes_supported: every role a token for this server may need - its own door and
#: the roles its tools exchange into.
SCOPES_SUPPORTED = (ROLE_ACCESS, ROLE_GET, ROLE_POST, ROLE_DELETE)
#: The scope= of the 401/403 challenges (MCP authorization spec, scope selection): what a
#: client needs to get in and read - a client steps up with exactly this.
CHALLENGE_SCOPE = f"{ROLE_ACCESS} {ROLE_GET}"
READ_ONLY = ToolAnnotations(read_only_hint=True)
#: The SDK transport's own body limit: a larger body is handed on unread, for its 413.
MAX_BODY_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE
#: SEP-2549 freshness hints (2026-07-28). The tool list and the server's discover result are the
#: same for every caller (each tool checks the caller's roles through its exchange), so a client
#: may keep them for a minute and share them across principals: a tool call is then one round
#: trip instead of discover + tools/list + tools/call.
CACHE_HINTS: dict[Any, CacheHint] = {
    "server/discover": CacheHint(ttl_ms=60_000, scope="public"),
    "tools/list": CacheHint(ttl_ms=60_000, scope="public"),
}


#: A tool's answer: a CallToolResult (so a refusal, too, can carry the hops in ``_meta``) whose
#: structured content is a JSON object, as the tools' output schema says.
ToolAnswer = Annotated[CallToolResult, dict[str, Any]]
#: A document id: a JSON integer, strictly (pydantic's lax mode would read ``true`` and ``"1"``
#: as 1); its range is checked by ``_positive``, whose refusal says what an id must be.
DocId = Annotated[int, Field(strict=True)]


class LabMCPServer(MCPServer[Any]):
    """The SDK's server, whose tools refuse bad arguments in words: which argument, what was
    expected, what came (:mod:`lab.mcpserver.readable`) - not pydantic's text, which names
    internal model classes and links to pydantic's docs. Every tool, present and future, goes
    through here; the refusal stays a tool result with ``isError`` (MCP: tool errors are
    reported in the result, so a model can read and correct them)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            schemas = {tool.name: tool.input_schema for tool in await self.list_tools()}
            properties = (schemas.get(name) or {}).get("properties", {})
            problems = describe(cause.errors(include_url=False), properties=properties)
            refusal = f"Error executing tool {name}: invalid arguments: {problems}"
            raise ToolError(refusal) from cause


class ServerSettings:
    """``require_access`` and friends, persisted in ``$LAB_HOME`` so a restart keeps them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.require_access = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and isinstance(data.get("require_access"), bool):
            self.require_access = data["require_access"]

    def as_dict(self) -> dict[str, Any]:
        return {"require_access": self.require_access}

    def update(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body:
            raise InvalidRequest('expected a JSON object such as {"require_access": true}')
        unknown = sorted(set(body) - {"require_access"})
        if unknown:
            raise InvalidRequest(f"unknown setting(s): {', '.join(unknown)[:200]}")
        if not isinstance(body["require_access"], bool):
            raise InvalidRequest("'require_access' must be true or false")
        self.require_access = body["require_access"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict()))
        os.replace(tmp, self.path)
        log.info("settings changed: %s", self.as_dict())
        return self.as_dict()


class PdpTokenVerifier:
    """The SDK's ``TokenVerifier``: PDP access tokens whose ``aud`` is this server's URL.

    Nothing else: a token for the document API (``aud`` ``api``) is refused here with 401
    ``invalid_token``, just as the document API refuses this server's tokens (RFC 9068 §4,
    RFC 8707 §2; MCP authorization spec, "Token Audience Binding").
    """

    def __init__(self, jwks: HeldKeys, issuer: str, resource: str) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audiences = [resource]
        #: The same access token comes with every tool call of an agent's session: after its
        #: first check, a repeat costs a SHA-256 instead of a parse and an ES256 verification,
        #: while its key is still the one the JWKS holds and it is unexpired (VerifiedTokens).
        self.verified = VerifiedTokens()

    def _verify(self, keys: JwksCache, token: str) -> dict[str, Any]:
        return verify_access_token(
            token, keys, issuer=self.issuer, audience=self.audiences, cache=self.verified
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            # On the loop when the PDP's key is held, else in a thread (lab.heldkeys).
            claims = await verify_on_loop(functools.partial(self._verify, token=token), self.jwks)
        except OAuthError:
            return None  # the SDK answers 401 with resource_metadata
        scopes = claims.get("scp")
        if not isinstance(scopes, list):
            scope = claims.get("scope")
            scopes = scope.split() if isinstance(scope, str) else []
        aud = claims.get("aud")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims["sub"]),
            scopes=[str(s) for s in scopes],
            expires_at=int(claims["exp"]),
            resource=aud if isinstance(aud, str) else None,
            subject=str(claims["sub"]),
            claims=claims,
        )


class AccessGate:
    """The bearer gate of ``/mcp``, in place of the SDK's ``RequireAuthMiddleware``.

    - no ``Authorization`` header: 401 whose challenge carries no ``error`` (RFC 6750 §3.1),
      only ``scope`` and the RFC 9728 ``resource_metadata`` pointer;
    - a token the verifier refused (bad signature, expired, another audience such as ``api``):
      401 ``invalid_token``, same ``scope`` and pointer;
    - with ``require_access`` (step 8): ``access`` on ``mcp:mcp``, decided locally from domain
      ``mcp``'s signed policy data; refused: 403 ``insufficient_scope`` with ``scope``, so a
      client can step up (MCP authorization spec, "Scope Selection Strategy").
    """

    def __init__(
        self, app: ASGIApp, settings: ServerSettings, policy: PolicyCache, metadata_url: str
    ) -> None:
        self.app = app
        self.settings = settings
        self.policy = policy
        self.metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if not isinstance(user, AuthenticatedUser):
            await self._unauthenticated(scope)(scope, receive, send)
            return
        if self.settings.require_access:
            refusal = await self._refusal(user.access_token)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        if scope.get("method") == "POST" and not _is_json(scope.get("headers", [])):
            # The SDK's transport would answer a plain-text 400; every refusal here is JSON.
            await self._not_json()(scope, receive, send)
            return
        if scope.get("method") == "GET":
            # Stateless JSON mode has nothing to push, yet the SDK would hold the standalone SSE
            # stream open forever (a connection per GET, never answered). The Streamable HTTP
            # transport (MCP 2025-06-18, "Listening for Messages from the Server") lets a server
            # without that stream answer 405.
            await self._no_stream()(scope, receive, send)
            return
        send = self._challenge_on_refusal(refusals_as_json(send))
        if scope.get("method") == "POST":
            screened = await envelope.screened(scope, receive, send, MAX_BODY_BYTES)
            if screened is None:
                return  # refused: a JSON-RPC error has been answered
            receive, send = screened
        await self.app(scope, receive, send)

    @staticmethod
    def _no_stream() -> Response:
        body = {
            "error": "method_not_allowed",
            "error_description": "this MCP server is stateless: POST JSON-RPC requests to it",
        }
        return JSONResponse(body, status_code=405, headers={"Allow": "POST"})

    @staticmethod
    def _not_json() -> Response:
        error = InvalidRequest(
            "POST a JSON-RPC message with Content-Type: application/json", status=415
        )
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())

    def _challenge_on_refusal(self, send: Send) -> Send:
        """The transport's own 401/403 (a foreign ``Origin``) still carry a Bearer challenge:
        every refusal at a resource server says how to authenticate (RFC 6750 §3)."""

        async def challenged(message: Any) -> None:
            if message.get("type") == "http.response.start" and message.get("status") in (
                401,
                403,
            ):
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"www-authenticate" for name, _ in headers):
                    challenge = f'Bearer resource_metadata="{self.metadata_url}"'
                    headers.append((b"www-authenticate", challenge.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        return challenged

    def _unauthenticated(self, scope: Scope) -> Response:
        sent = any(name.lower() == b"authorization" for name, _ in scope.get("headers", []))
        error: OAuthError
        if sent:
            error = InvalidToken(
                "the access token is not valid here: it must be a PDP access token issued for "
                "this MCP server (aud = its URL), unexpired and correctly signed",
                resource_metadata=self.metadata_url,
                scope=CHALLENGE_SCOPE,
            )
        else:
            error = MissingToken(
                "this MCP server needs an access token: Authorization: Bearer <token>",
                resource_metadata=self.metadata_url,
                scope=CHALLENGE_SCOPE,
            )
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())

    async def _refusal(self, token: AccessToken) -> Response | None:
        claims = token.claims or {}
        try:
            policy = await self.policy.current_async()
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())
        decision = decide_locally(
            policy, claims, domain=MCP_DOMAIN, action=ACCESS_ACTION, resource=ACCESS_RESOURCE
        )
        if decision.allowed:
            return None
        log.info(
            "access on %s denied for sub=%s jti=%s: %s",
            ACCESS_RESOURCE,
            claims.get("sub"),
            claims.get("jti"),
            decision.reason,
        )
        error = InsufficientScope(
            f"Token does not have '{ACCESS_ACTION}' action on '{ACCESS_RESOURCE}' "
            f"({decision.reason})",
            resource_metadata=self.metadata_url,
            scope=CHALLENGE_SCOPE,
        )
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


def create_app(settings: Settings) -> Starlette:
    endpoints = settings.endpoints
    resource_url = endpoints.mcp
    metadata_url = _metadata_url(resource_url)
    admin_audience = _origin(resource_url)
    admin_pub = settings.key_file(ADMIN_PRINCIPAL).with_suffix(".pub.pem")

    jwks = HeldKeys(endpoints.zts_jwks)
    # The MCP server's policies live in its own domain, mcp (tutorial: the Runtime Proxy's ZPU).
    policy = PolicyCache(
        endpoints.zts,
        MCP_DOMAIN,
        jwks,
        verify=verify_signed_policy_data,
        refresh_s=settings.policy_refresh_s,
    )
    server_settings = ServerSettings(settings.home / "mcpserver-settings.json")
    # Contracts §1: the MCP server creates its key if the backend has not, so that step 5 can
    # register the public half (keys/mcp.api-mcp.pub.pem) with the PDP.
    SigningKey.load_or_create(settings.key_file(MCP_PRINCIPAL))
    # One long-lived client for the MCP server's calls to the PDP and the document API; its
    # hooks record them during a tool call, for the tool result's _meta (lab.mcpserver.hops).
    http = lab_http.SharedAsyncClient(timeout=10.0, event_hooks=hops.event_hooks(jwks))
    exchanger = Exchanger(
        http=http,
        token_endpoint=endpoints.zts_token,
        issuer=endpoints.zts,
        client_id=MCP_PRINCIPAL,
        key_path=settings.key_file(MCP_PRINCIPAL),
        source_domain=MCP_DOMAIN,
        audience=API_DOMAIN,
    )
    docapi = DocApiClient(endpoints.docapi_protected, http)

    mcp = LabMCPServer(
        "idjag-lab-docs",
        instructions="The ID-JAG lab's documents, reached with a down-scoped token.",
        token_verifier=PdpTokenVerifier(jwks, endpoints.zts, resource_url),
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(endpoints.zts),  # RFC 9728 authorization_servers
            resource_server_url=AnyHttpUrl(resource_url),
            # PdpTokenVerifier checks aud itself (only this URL), with the reason in its log.
            validate_token_resource=False,
            # RFC 9728 scopes_supported. The SDK would also demand these of every token; the
            # AccessGate replaces its bearer middleware on /mcp, so they are only advertised.
            required_scopes=list(SCOPES_SUPPORTED),
        ),
        extensions=list(SERVER_EXTENSIONS),
        cache_hints=CACHE_HINTS,
    )
    declare_in_legacy_initialize(mcp, SERVER_EXTENSIONS)

    async def call_docapi(
        role: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> ToolAnswer:
        """The tool's answer, refused or not, with this server's own hops in ``_meta``."""
        with hops.recording() as made:
            try:
                result = await exchange_and_call(role, method, path, body)
            except ToolError as refusal:
                return CallToolResult(
                    content=[TextContent(type="text", text=str(refusal))],
                    is_error=True,
                    _meta=hops.meta(made),
                )
        return CallToolResult(
            content=[TextContent(type="text", text=answer_text(result))],
            structured_content=result,
            _meta=hops.meta(made),
        )

    async def exchange_and_call(
        role: str, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        received = get_access_token()
        if received is None:
            raise ToolError(
                "no access token reached this tool (the MCP server needs Authorization: Bearer)"
            )
        try:
            exchanged = await exchanger.exchange(received.token, role, current_correlation_id())
        except ExchangeRefused as refusal:
            log.info(
                "exchange for %s refused (status %s) for received jti=%s",
                role,
                refusal.status,
                (received.claims or {}).get("jti"),
            )
            raise ToolError(refusal.explain()) from None
        result = await docapi.call(method, path, exchanged, body)
        exchanged_claims = unverified_claims(exchanged)
        result["exchanged_token"] = {
            key: exchanged_claims.get(key)
            for key in ("sub", "client_id", "act", "aud", "scope", "jti")
        }
        received_claims = received.claims or {}
        result["received_token"] = {
            key: received_claims.get(key) for key in ("jti", "aud", "client_id")
        }
        log.info(
            "%s %s as %s: received jti=%s, sent exchanged jti=%s",
            method,
            path,
            role,
            received_claims.get("jti"),
            exchanged_claims.get("jti"),
        )
        return result

    @mcp.tool(annotations=READ_ONLY)
    async def list_docs() -> ToolAnswer:
        """List every document (needs api:role.docs-getter)."""
        return await call_docapi(ROLE_GET, "GET", "/api/docs")

    @mcp.tool(annotations=READ_ONLY)
    async def get_doc(id: DocId) -> ToolAnswer:  # noqa: A002 - the tool's public parameter name
        """Read one document by id (needs api:role.docs-getter)."""
        return await call_docapi(ROLE_GET, "GET", f"/api/docs/{_positive(id)}")

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def create_doc(name: str, content: str) -> ToolAnswer:
        """Create a document (needs api:role.docs-poster)."""
        return await call_docapi(ROLE_POST, "POST", "/api/docs", {"name": name, "content": content})

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    async def delete_doc(id: DocId) -> ToolAnswer:  # noqa: A002
        """Delete a document by id (needs api:role.docs-deleter)."""
        return await call_docapi(ROLE_DELETE, "DELETE", f"/api/docs/{_positive(id)}")

    async def healthz(request: Request) -> Response:
        # Answered from a worker thread: if every thread is stuck the check fails too, and a
        # part that cannot reach its policy data says so instead of answering 200.
        ok, detail = await run_in_threadpool(policy.health)
        body = {"status": "ok" if ok else "unavailable", "part": "mcpserver", "policy": detail}
        return json_response(body, 200 if ok else 503)

    async def policy_version(request: Request) -> Response:
        # The signed policy data (domain mcp) this server holds; `Cache-Control: max-age=0`
        # asks for it to be revalidated with the PDP first (a step that changed the policy).
        held = await policy_held(policy, request.headers.get("cache-control"))
        return json_response({"part": "mcpserver", **held})

    async def lab_settings(request: Request) -> Response:
        await run_in_threadpool(verify_admin_request, request.headers, admin_pub, admin_audience)
        if request.method == "PUT":
            return json_response(server_settings.update(await read_json(request)))
        return json_response(server_settings.as_dict())

    mcp.custom_route("/healthz", methods=["GET"])(healthz)
    mcp.custom_route("/healthz/policy", methods=["GET"])(policy_version)
    mcp.custom_route("/lab/settings", methods=["GET", "PUT"])(lab_settings)

    app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        # Stateless JSON: every request stands alone with its own bearer token, so a restart or a
        # new token never strands a session, and captured traffic is plain JSON.
        stateless_http=True,
        json_response=True,
        transport_security=_transport_security(resource_url),
        host=settings.host,
    )
    app.exception_handlers.update(exception_handlers())
    harden(app, settings)
    _insert_access_gate(app, AccessGate, server_settings, policy, metadata_url)
    app.add_middleware(CorrelationContext)
    app.state.server_settings = server_settings
    app.state.mcp = mcp
    return app


class DocApiClient:
    """Calls the protected document API with the exchanged token only."""

    def __init__(self, base_url: str, http: lab_http.SharedAsyncClient | None = None) -> None:
        self.base_url = base_url
        self.http = http or lab_http.SharedAsyncClient(timeout=10.0)

    async def call(
        self, method: str, path: str, token: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            response = await self.http.get().request(
                method,
                _url(self.base_url, path),
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise ToolError(
                f"the document API at {self.base_url} could not be reached: {exc}"
            ) from None
        data = _json_or_none(response)
        if response.status_code >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            reason = data.get("error_description") if isinstance(data, dict) else None
            raise ToolError(
                f"the document API refused {method} {path}: HTTP {response.status_code}"
                f"{' ' + str(error) if error else ''}"
                f"{' - ' + str(reason) if reason else ' - ' + response.text[:300]}"
            )
        if not isinstance(data, dict):
            raise ToolError(f"the document API answered {method} {path} with a non-JSON body")
        if log.isEnabledFor(logging.DEBUG):  # the token's hash only for a line that is written
            log.debug(
                "docapi %s %s -> %s (token %s)",
                method,
                path,
                response.status_code,
                token_fingerprint(token),
            )
        return data


@functools.lru_cache(maxsize=64)
def _url(base_url: str, path: str) -> httpx.URL:
    """``base_url + path`` parsed once for the paths in use (httpx parses a str URL per request)."""
    return httpx.URL(f"{base_url}{path}")


def answer_text(result: dict[str, Any]) -> str:
    """The text block of a structured answer, as the SDK writes it for a returned dict."""
    return to_json(result, fallback=str, indent=2).decode()


def _insert_access_gate(app: Starlette, gate: type[AccessGate], *args: Any) -> None:
    """Put the gate in place of the SDK's RequireAuthMiddleware on ``/mcp``.

    The SDK's middleware answers every unauthenticated request with ``error="invalid_token"``
    (even without credentials, against RFC 6750 §3.1), puts no ``scope`` in its challenges and
    has no hook for a policy check after authentication. Its authentication backend stays (it
    fills ``scope["user"]``); the gate takes over from there, around the same transport.
    """
    for route in app.router.routes:
        if isinstance(route, Route) and route.path == MCP_PATH and hasattr(route.endpoint, "app"):
            if route.app is not route.endpoint:
                raise RuntimeError("the MCP SDK wraps its /mcp route; the bearer gate cannot go in")
            replacement = gate(route.endpoint.app, *args)
            route.endpoint = replacement
            route.app = replacement
            return
    raise RuntimeError("the MCP SDK app has no authenticated /mcp route to protect")


def _transport_security(resource_url: str) -> TransportSecuritySettings:
    """Keep the SDK's DNS-rebinding guard, allowing loopback and the configured MCP host."""
    netloc = urlsplit(resource_url).netloc
    scheme = urlsplit(resource_url).scheme
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", netloc]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", f"{scheme}://{netloc}"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def _metadata_url(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known segment goes between the host and the resource's path."""
    parts = urlsplit(resource_url)
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{parts.path}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def refusals_as_json(send: Send) -> Send:
    """The SDK transport's own 4xx answers (``Request body too large``, ``Invalid Host header``,
    ...) are plain text; every refusal from this server is a JSON error object instead, with
    the transport's words as its description and the status unchanged."""
    held: dict[str, Any] | None = None
    text = bytearray()

    async def translated(message: Any) -> None:
        nonlocal held
        if message.get("type") == "http.response.start":
            status = int(message.get("status", 200))
            if 400 <= status < 500 and not _is_json(message.get("headers", [])):
                held = message
                return
            await send(message)
            return
        if held is None or message.get("type") != "http.response.body":
            await send(message)
            return
        text.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = int(held["status"])
        body = json.dumps(
            {
                "error": http_error_code(status),
                "error_description": text.decode("utf-8", "replace")[:300],
            }
        ).encode()
        headers = [
            (name, value)
            for name, value in held.get("headers", [])
            if name.lower() not in (b"content-type", b"content-length")
        ]
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({**held, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return translated


def _is_json(headers: Any) -> bool:
    """Whether ASGI ``headers`` (a request's or a response's) say the body is JSON
    (``application/json``, any parameters)."""
    for name, value in headers:
        if name.lower() == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


def _positive(doc_id: int) -> int:
    if isinstance(doc_id, bool) or not 0 < doc_id <= 2**53:
        digits = str(doc_id)
        shown = digits if len(digits) <= 20 else f"an integer of {len(digits)} digits"
        raise ToolError(f"'id' must be a positive integer up to 2^53 (got {shown})")
    return doc_id


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
