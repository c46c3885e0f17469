"""Every route of every part, walked with a fixed set of malformed requests: 4xx, never 5xx.

The route list is derived from the Starlette apps themselves (IdP, PDP = ZMS + ZTS, document API
on both ports, MCP server, the lab ui), so a route added later is swept too. For every route and
every hostile request: no 5xx, no traceback text in the body, an answer within 5 s, JSON errors
with an ``error`` member, a ``WWW-Authenticate`` header on a 401/403 from a resource server
(RFC 6750 §3), and an OAuth error at a token endpoint (RFC 6749 §5.2).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import jwt
import pytest
from mcp.server.lowlevel import Server
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from lab.agent.chain import Agent
from lab.config import ADMIN_PRINCIPAL, LEARNER_PRINCIPAL, Settings
from lab.gateway.http import build_http_app
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, make_client_assertion
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS
from lab.serving import bind_socket, serve_in_thread
from lab.ui.app import create_app as create_ui
from lab.ui.guard import TOKEN_HEADER
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

#: Parts whose 401/403 must carry ``WWW-Authenticate`` (they check Bearer tokens).
RESOURCE_SERVERS = {"docapi_protected", "mcp"}
#: Paths answering RFC 6749 token-endpoint errors.
TOKEN_PATHS = {
    "/zts/v1/oauth2/token",
    "/zts/v1/oauth2/introspect",
    "/realms/idjag/protocol/openid-connect/token",
    "/realms/idjag/protocol/openid-connect/token/introspect",
}
SLOW_S = 5.0
UI_TOKEN = "sweep-ui-token"
OTHER_PRINCIPAL = "human.idjag-other"


@dataclass(frozen=True)
class Target:
    part: str
    base: str
    path: str
    methods: frozenset[str]


def concrete(path: str) -> str:
    """A request path for a route template: ``{n:int}`` → 1, ``{name}`` → ``x``."""
    out, rest = "", path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        spec, _, rest = tail.partition("}")
        out += head + ("1" if spec.endswith((":int", ":step")) else "x")
    return out + rest


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, frozenset[str]]]:
    for route in routes:
        if isinstance(route, Route):
            # No method list: the route takes any method (the MCP SDK's transport endpoint).
            yield prefix + route.path, frozenset(route.methods or {"GET", "POST", "DELETE"})
        elif isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner:
                yield from walk(list(inner), prefix + route.path)
            else:
                yield prefix + route.path + "/x", frozenset({"GET"})


def app_routes(app: Any) -> list[tuple[str, frozenset[str]]]:
    starlette = app
    while not isinstance(starlette, Starlette) and hasattr(starlette, "app"):
        starlette = starlette.app
    assert isinstance(starlette, Starlette), app
    return sorted(set(walk(list(starlette.routes))))


def fake_runner(*args: str) -> tuple[int, str, str]:
    return 0, json.dumps({"records": [], "count": 0, "valid": True, "problems": []}), ""


@dataclass
class Sweep:
    lab: RunningLab
    targets: list[Target]
    http: httpx.Client
    #: Per part, the headers that get a request past authentication (fresh on every call:
    #: admin assertions are single use), so hostile bodies reach the handlers themselves.
    auth: dict[str, Callable[[str], dict[str, str]]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    home = tmp_path_factory.mktemp("sweep") / "home"
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(full_lab(home))
        ui_sock = bind_socket("127.0.0.1", 0)
        ui_base = f"http://127.0.0.1:{ui_sock.getsockname()[1]}"
        ui = create_ui(lab.settings, UI_TOKEN, fake_runner)
        stack.enter_context(serve_in_thread(ui, ui_sock))
        from lab.docapi.app import create_app as create_docapi
        from lab.idp.app import create_app as create_idp
        from lab.mcpserver.app import create_app as create_mcp
        from lab.pdp.app import create_app as create_pdp

        # The same factories the lab serves, asked for their routes (a throwaway home, no I/O).
        scratch = replace(Settings(), home=home.parent / "routes")
        factories: dict[str, Callable[[], Any]] = {
            "idp": lambda: create_idp(lab.settings),
            "zts": lambda: create_pdp(scratch),
            "docapi_protected": lambda: create_docapi(scratch, protected=True),
            "docapi_unprotected": lambda: create_docapi(scratch, protected=False),
            "mcp": lambda: create_mcp(lab.settings),
        }
        bases = {
            "idp": lab.endpoints.idp_issuer,
            "zts": lab.endpoints.zts,
            "docapi_protected": lab.endpoints.docapi_protected,
            "docapi_unprotected": lab.endpoints.docapi_unprotected,
            "mcp": lab.endpoints.mcp,
        }
        targets = [
            Target(part, base_of(bases[part]), path, methods)
            for part, factory in factories.items()
            for path, methods in app_routes(factory())
        ]
        targets += [Target("ui", ui_base, p, m) for p, m in app_routes(ui)]
        # The gateway's HTTP side (the SDK transport under the secret path, behind the Host/Origin
        # guard), around a bare low-level server: the tools behind it are the MCP server's.
        gateway_sock = bind_socket("127.0.0.1", 0)
        gateway_port = gateway_sock.getsockname()[1]
        gateway = build_http_app(Server("sweep"), "127.0.0.1", gateway_port, "sweep-secret")
        stack.enter_context(serve_in_thread(gateway, gateway_sock))
        gateway_base = f"http://127.0.0.1:{gateway_port}"
        targets += [Target("gateway", gateway_base, p, m) for p, m in app_routes(gateway)]
        http = stack.enter_context(httpx.Client(timeout=SLOW_S + 5))
        yield Sweep(lab, targets, http, credentials(lab, http))


def credentials(lab: RunningLab, http: httpx.Client) -> dict[str, Callable[[str], dict[str, str]]]:
    """Valid credentials for each part: the learner may get, post and delete documents."""
    lab.admin.role("api", "docs-poster", (LEARNER_PRINCIPAL,))
    lab.admin.policy(
        "api",
        "docs-poster",
        [("docs-poster", "post", "api:docs"), ("docs-poster", "delete", "api:docs")],
    )
    learner = SigningKey.load_or_create(lab.settings.key_file(LEARNER_PRINCIPAL))
    api = http.post(
        lab.endpoints.zts_token,
        data={
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": "api:role.docs-getter api:role.docs-poster",
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(
                LEARNER_PRINCIPAL, learner, lab.endpoints.zts
            ),
        },
    )
    assert api.status_code == 200, api.text
    api_token = api.json()["access_token"]
    with Agent(lab.endpoints, lab.settings) as agent:
        signed_in = agent.sign_in("idjag-learner", "password", method="password")
        assert signed_in.id_token, signed_in
        id_jag = agent.request_id_jag(signed_in.id_token)
        assert id_jag.token, id_jag.message
        access = agent.redeem_id_jag(id_jag.token)
        assert access.token, access.message
    mcp_token = access.token
    admin_key = SigningKey.load_or_create(lab.settings.key_file(ADMIN_PRINCIPAL))

    def admin(path: str) -> dict[str, str]:
        audience = lab.endpoints.zms if path.startswith("/zms/") else lab.endpoints.zts
        return bearer(make_admin_assertion(ADMIN_PRINCIPAL, admin_key, audience))

    return {
        "zts": admin,
        "docapi_protected": lambda path: (
            bearer(api_token) if path.startswith("/api/") else admin("")
        ),
        "docapi_unprotected": lambda path: admin(""),
        "mcp": lambda path: bearer(mcp_token),
        "ui": lambda path: {TOKEN_HEADER: UI_TOKEN},
        "idp": lambda path: {},
        "gateway": lambda path: {},  # the secret path is its credential
    }


def base_of(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


# ------------------------------------------------------------------------------ hostile requests

NONE_TOKEN = jwt.encode(
    {"sub": "x", "exp": 2**40, "iss": "x", "aud": "x"},
    "",
    algorithm="none",
    headers={"typ": "at+jwt"},
)
HUGE_CLAIMS = jwt.encode({"sub": "x" * 60_000, "exp": 2**70}, "k" * 32, algorithm="HS256")
WRONG_TYP = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"typ": "banana"})


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str | None  # None: each of the route's methods
    headers: dict[str, Any]
    body: bytes | None = None
    suffix: str = ""


FORM = "application/x-www-form-urlencoded"
JSON_CT = "application/json"
HOSTILE = [
    Hostile("wrong-method", "PATCH", {}),
    Hostile("options", "OPTIONS", {}),
    Hostile("no-body", None, {}),
    Hostile("nested-json", None, {"Content-Type": JSON_CT}, b"[" * 10_000 + b"]" * 10_000),
    Hostile("nested-object", None, {"Content-Type": JSON_CT}, b'{"a":' * 5000 + b"1" + b"}" * 5000),
    Hostile("huge-int", None, {"Content-Type": JSON_CT}, b'{"to": 1' + b"0" * 5000 + b"}"),
    Hostile("int-2^70", None, {"Content-Type": JSON_CT}, b'{"to": 1180591620717411303424, "a": 1}'),
    Hostile("nan", None, {"Content-Type": JSON_CT}, b'{"to": NaN, "name": NaN}'),
    Hostile("json-array", None, {"Content-Type": JSON_CT}, b"[1, 2]"),
    Hostile("json-string", None, {"Content-Type": JSON_CT}, b'"x"'),
    Hostile("json-null", None, {"Content-Type": JSON_CT}, b"null"),
    Hostile("json-truncated", None, {"Content-Type": JSON_CT}, b'{"a": '),
    Hostile("invalid-utf8-json", None, {"Content-Type": JSON_CT}, b'{"a": "\xff\xfe"}'),
    Hostile("invalid-utf8-form", None, {"Content-Type": FORM}, b"grant_type=\xff\xfe&a=%ff%fe"),
    Hostile(
        "duplicate-form", None, {"Content-Type": FORM}, b"grant_type=a&grant_type=b&scope=x&scope=y"
    ),
    Hostile("huge-form", None, {"Content-Type": FORM}, b"grant_type=" + b"a" * 1_000_000),
    Hostile("text-plain", None, {"Content-Type": "text/plain"}, b"hello"),
    Hostile(
        "bad-multipart",
        None,
        {"Content-Type": "multipart/form-data; boundary=zz"},
        b"--zz\r\nbroken",
    ),
    Hostile("multipart-no-boundary", None, {"Content-Type": "multipart/form-data"}, b"x"),
    Hostile("bad-charset", None, {"Content-Type": "application/json; charset=bogus"}, b"{}"),
    Hostile("query-invalid-utf8", None, {}, suffix="?a=%ff%fe&redirect_uri=%00&a=b"),
    Hostile("query-huge", None, {}, suffix="?q=" + "a" * 6000),
    Hostile("bearer-garbage", None, {"Authorization": "Bearer !!!not.a.jwt"}),
    Hostile("bearer-empty", None, {"Authorization": "Bearer"}),
    Hostile("bearer-none-alg", None, {"Authorization": f"Bearer {NONE_TOKEN}"}),
    Hostile("bearer-wrong-typ", None, {"Authorization": f"Bearer {WRONG_TYP}"}),
    Hostile("bearer-huge-claims", None, {"Authorization": f"Bearer {HUGE_CLAIMS}"}),
    Hostile("basic-garbage", None, {"Authorization": "Basic %%%"}),
    Hostile(
        "basic-no-colon", None, {"Authorization": "Basic " + base64.b64encode(b"abc").decode()}
    ),
    Hostile(
        "basic-invalid-utf8", None, {"Authorization": b"Basic " + base64.b64encode(b"\xff:\xfe")}
    ),
    Hostile("scheme-bogus", None, {"Authorization": "Negotiate abc"}),
    Hostile("header-latin1", None, {"Authorization": b"Bearer \xff\xfe", "X-Lab-Token": b"\xff"}),
    Hostile("header-huge", None, {"X-Big": "a" * 60_000}),
    Hostile("dpop-garbage", None, {"DPoP": "x.y.z", "Authorization": "DPoP x.y.z"}),
    Hostile("bad-host", None, {"Host": "evil.example"}),
    Hostile("host-with-junk", None, {"Host": "127.0.0.1:99999999999999999999"}),
    Hostile("accept-weird", None, {"Accept": "text/event-stream", "Mcp-Session-Id": "\x01"}),
    Hostile("ui-token-latin1", None, {"X-Lab-Token": b"\xff\xfe", "Origin": "null"}),
    # The lab ui's own token header with obs-text: hmac.compare_digest raised on it (a 500).
    Hostile("ui-token-header-latin1", None, {TOKEN_HEADER: b"\xff\xfe"}),
    # An Origin no URL parser reads: the lab ui's guard raised ValueError on it (a 500).
    Hostile("origin-unparsable", None, {"Origin": "http://[::1"}),
    Hostile("origin-bad-port", None, {"Origin": "http://127.0.0.1:99999999999"}),
]
PATH_TRICKS = ["/%2e%2e/%2e%2e/etc/passwd", "//", "/" + "a" * 8000, "/%00", "/%ff", "/..;/x"]


def check(target: Target, hostile: str, response: httpx.Response, elapsed: float) -> list[str]:
    problems = []
    where = f"{target.part} {response.request.method} {target.path} [{hostile}]"
    text = response.text
    if response.status_code >= 500:
        problems.append(f"{where}: {response.status_code} {text[:200]}")
    if "Traceback" in text or 'File "' in text:
        problems.append(f"{where}: traceback in body")
    if elapsed > SLOW_S:
        problems.append(f"{where}: took {elapsed:.1f}s")
    if (
        target.part in RESOURCE_SERVERS
        and response.status_code in (401, 403)
        and hostile != "bad-host"
        and "www-authenticate" not in response.headers
    ):
        problems.append(f"{where}: {response.status_code} without WWW-Authenticate")
    if (
        target.path in TOKEN_PATHS
        and 400 <= response.status_code < 500
        and response.status_code != 405
    ):
        try:
            error = response.json().get("error")
        except ValueError:
            error = None
        if not isinstance(error, str):
            problems.append(f"{where}: {response.status_code} not an OAuth error: {text[:120]}")
    return problems


def send(
    http: httpx.Client,
    target: Target,
    method: str,
    hostile: Hostile,
    path: str,
    extra: dict[str, str] | None = None,
) -> list[str]:
    started = time.monotonic()
    try:
        response = http.request(
            method,
            target.base + path + hostile.suffix,
            headers={**(extra or {}), **hostile.headers},
            content=hostile.body,
        )
    except httpx.TimeoutException:
        return [f"{target.part} {method} {path} [{hostile.name}]: hung"]
    except httpx.HTTPError as error:  # a closed connection is a refusal, not a crash
        return (
            []
            if "disconnect" in str(error).lower()
            else [f"{target.part} {method} {path} [{hostile.name}]: {error!r}"]
        )
    return check(target, hostile.name, response, time.monotonic() - started)


def test_the_sweep_walks_every_part(sweep: Sweep) -> None:
    parts = {t.part for t in sweep.targets}
    assert parts == {"idp", "zts", "docapi_protected", "docapi_unprotected", "mcp", "ui", "gateway"}
    assert len(sweep.targets) > 40


def brings_credentials(hostile: Hostile) -> bool:
    return bool({"authorization", TOKEN_HEADER} & {k.lower() for k in hostile.headers})


#: Each hostile request anonymously, and (unless it brings its own) past authentication.
SWEEP_CASES = [
    pytest.param(
        h, authenticated, id=f"{h.name}-{'authenticated' if authenticated else 'anonymous'}"
    )
    for h in HOSTILE
    for authenticated in (False, True)
    if not (authenticated and brings_credentials(h))
]


@pytest.mark.parametrize(("hostile", "authenticated"), SWEEP_CASES)
def test_hostile_request_to_every_route_is_never_a_server_error(
    sweep: Sweep, hostile: Hostile, authenticated: bool
) -> None:
    problems: list[str] = []
    for target in sweep.targets:
        if target.path.endswith("/events") or target.path in ("/api/run-all",):
            continue  # server-sent events stream (never ends); run-all is the runner's
        methods = [hostile.method] if hostile.method else sorted(target.methods - {"HEAD"})
        for method in methods:
            path = concrete(target.path)
            extra = sweep.auth[target.part](path) if authenticated else None
            problems += send(sweep.http, target, method, hostile, path, extra)
    assert not problems, "\n".join(problems)


def test_odd_paths_are_never_a_server_error(sweep: Sweep) -> None:
    problems: list[str] = []
    bases = {(t.part, t.base) for t in sweep.targets}
    plain = Hostile("path", "GET", {})
    for part, base in bases:
        for trick in PATH_TRICKS:
            problems += send(
                sweep.http, Target(part, base, trick, frozenset()), "GET", plain, trick
            )
            problems += send(
                sweep.http, Target(part, base, trick, frozenset()), "POST", plain, trick
            )
    assert not problems, "\n".join(problems)


#: What an outsider puts in a path parameter: 5000 digits (``int()`` refuses more than 4300),
#: a negative, 2^64, a long name, traversal, NUL, invalid UTF-8.
PARAM_VALUES = ["9" * 5000, "-1", str(2**64), "x" * 5000, "..%2f..%2fetc", "%00", "%ff%fe"]


def with_values(path: str, value: str) -> str:
    """``path`` with every ``{param}`` given ``value``."""
    out, rest = "", path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        _, _, rest = tail.partition("}")
        out += head + value
    return out + rest


def test_hostile_path_parameters_are_never_a_server_error(sweep: Sweep) -> None:
    """Every route with a path parameter, each parameter given each of ``PARAM_VALUES``,
    authenticated. Found: the lab ui's ``{number:int}`` routes were a 500 for 5000 digits
    (Starlette's ``int`` convertor has no length bound); ``StepNumber`` takes six digits.
    Shown failing with the ui's routes back on ``{number:int}``."""
    problems: list[str] = []
    for target in sweep.targets:
        if "{" not in target.path:
            continue
        for value in PARAM_VALUES:
            path = with_values(target.path, value)
            extra = sweep.auth[target.part](path)
            for method in sorted(target.methods - {"HEAD"}):
                problems += send(
                    sweep.http, target, method, Hostile("param", method, {}), path, extra
                )
    assert not problems, "\n".join(problems)


MCP_LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}


def test_an_authenticated_get_of_the_mcp_endpoint_is_405_not_a_stream_held_open(
    sweep: Sweep,
) -> None:
    # Found by the sweep: stateless JSON mode has nothing to push, yet GET opened an SSE stream
    # that never answered (a connection held per request, forever).
    response = sweep.http.get(
        sweep.lab.endpoints.mcp,
        headers={**sweep.auth["mcp"]("/mcp"), "Accept": "text/event-stream"},
        timeout=SLOW_S,
    )
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


def test_a_foreign_origin_refusal_at_the_mcp_server_still_carries_a_bearer_challenge(
    sweep: Sweep,
) -> None:
    response = sweep.http.post(
        sweep.lab.endpoints.mcp,
        json=MCP_LIST_TOOLS,
        headers={**sweep.auth["mcp"]("/mcp"), **MCP_HEADERS, "Origin": "http://evil.example"},
    )
    assert response.status_code == 403, response.text
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert "resource_metadata=" in response.headers["www-authenticate"]


def test_the_tool_listing_cached_as_public_is_the_same_for_every_caller(sweep: Sweep) -> None:
    """SEP-2549 ``scope: public`` lets a shared cache serve one caller's listing to another:
    it must not depend on who asks (the learner's token, the agent's own client token)."""
    learner = sweep.http.post(
        sweep.lab.endpoints.mcp,
        json=MCP_LIST_TOOLS,
        headers={**sweep.auth["mcp"]("/mcp"), **MCP_HEADERS},
    )
    assert learner.status_code == 200, learner.text
    # A second user, let through the MCP server's door only (no document role at all).
    sweep.lab.admin.member("mcp", "mcp-accessor", OTHER_PRINCIPAL)
    with Agent(sweep.lab.endpoints, sweep.lab.settings) as agent:
        signed_in = agent.sign_in("idjag-other", "password", method="password")
        assert signed_in.id_token, signed_in
        id_jag = agent.request_id_jag(signed_in.id_token, scope="mcp:role.mcp-accessor")
        assert id_jag.token, id_jag.message
        other = agent.redeem_id_jag(id_jag.token)
        assert other.token, other.message
    listing = sweep.http.post(
        sweep.lab.endpoints.mcp,
        json=MCP_LIST_TOOLS,
        headers={**bearer(other.token), **MCP_HEADERS},
    )
    assert listing.status_code == 200, listing.text
    assert listing.json()["result"]["tools"], listing.text
    assert listing.json()["result"] == learner.json()["result"]
