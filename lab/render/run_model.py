"""One model of a run: a step result as plain JSON-ready data.

``lab verify --json`` writes exactly this (one record per step); the terminal renderer draws it
(focused by default, everything with ``--verbose``) and the web view draws the same record. So
a decision about *what* a learner sees (which claims matter, what changed, which calls form the
sequence) is made here once; renderers only decide *how* it looks.

Record shape (keys are stable; renderers ignore what they do not draw)::

    number slug title status mode duration_ms file message next_step
    narrative: {opening, rest}          the step's prose, values filled in, split after ¶1
    actions: [{id kind say command curl error duration_ms captured
               calls: [{method url party path status error mcp headers request_headers
                        request_body response_headers response_body summary}]
               tokens: [{label typ header claims focus changes previous fingerprint}]
               checks: [{action check query predicate expected actual passed why error
                         reproduce}]}]
    lineage: [{label typ claims}]       the chain's tokens, each once
    sequence: [{from to call status action index refusal}]   the hops of the chain, in order;
                                        action/index locate the call in ``actions``
    checks tokens errors                flat lists (the original report's keys)
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lab.oauth.jose import token_fingerprint
from lab.steps.model import ActionResult, StepResult, TokenSeen

#: Claims a learner should look at first, wherever a token is shown.
KEY_CLAIMS = ("typ", "iss", "sub", "aud", "client_id", "act", "scope", "resource", "jti", "exp")
#: Claims whose change from one token to the next tells the story of the chain.
DIFF_CLAIMS = ("iss", "sub", "aud", "client_id", "act", "scope", "resource")
#: When neither the step file nor its expectations name a claim, the default view shows these.
DEFAULT_FOCUS = ("sub", "client_id", "aud", "scope")
LINEAGE_CLAIMS = ("sub", "client_id", "act", "aud", "scope", "exp")
#: Lanes of the sequence diagram, left to right.
LANES = ("user", "agent", "IdP", "PDP", "MCP server", "document API")


def step_model(result: StepResult) -> dict[str, Any]:
    """The JSON-ready record of one step run (see the module docstring)."""
    opening, rest = split_narrative(result.body)
    record = {
        "number": result.number,
        "slug": result.slug,
        "title": result.title,
        "status": result.status,
        "mode": result.mode,
        "duration_ms": result.duration_ms,
        "file": result.path,
        "message": result.message,
        "next_step": result.next_step,
        "narrative": {"opening": opening, "rest": rest},
        "actions": [action_model(a) for a in result.actions],
        "lineage": lineage(result),
        "sequence": sequence(result),
        "checks": [
            {**c.as_dict(), **({} if c.passed else {"reproduce": a.curl or a.command})}
            for a in result.actions
            for c in a.checks
        ],
        "errors": [{"action": a.action_id, "error": a.error} for a in result.actions if a.error],
        "tokens": [t.as_dict() for t in result.tokens],
    }
    return json.loads(json.dumps(record, default=str))


def split_narrative(body: str) -> tuple[str, str]:
    """The opening paragraph ("In this step you will…") and the rest."""
    text = body.strip()
    if not text:
        return "", ""
    opening, _, rest = text.partition("\n\n")
    return opening.strip(), rest.strip()


def action_model(action: ActionResult) -> dict[str, Any]:
    focus = focus_claims(action)
    return {
        "id": action.action_id,
        "kind": action.kind,
        "say": action.say,
        "command": action.command,
        "curl": action.curl,
        "error": action.error,
        "duration_ms": action.duration_ms,
        "captured": sorted(action.captured),
        "calls": [call_model(e) for e in action.exchanges],
        "tokens": [token_model(t, focus) for t in action.tokens],
        "checks": [
            {**c.as_dict(), **({} if c.passed else {"reproduce": action.curl or action.command})}
            for c in action.checks
        ],
        "shown_headers": checked_headers(action),
        "result": action.result,
    }


def focus_claims(action: ActionResult) -> list[str]:
    """The claims that matter for this action: declared (``show:``), else those its
    expectations read, else :data:`DEFAULT_FOCUS`."""
    names = list(action.show)
    for check in action.checks:
        # "token $.access_token claim sub" / "token $.access_token header typ"
        words = check.query.split()
        if len(words) >= 4 and words[0] == "token" and words[2] == "claim":
            names.append(words[3])
    if not names:
        names = list(DEFAULT_FOCUS)
    return list(dict.fromkeys(names))


def checked_headers(action: ActionResult) -> list[str]:
    """Response headers the action's expectations read (shown in the default view)."""
    names = []
    for check in action.checks:
        words = check.query.split()
        if len(words) >= 2 and words[0] == "header":
            names.append(words[1].lower())
    return list(dict.fromkeys(names))


def token_model(token: TokenSeen, focus: list[str]) -> dict[str, Any]:
    return {
        "label": token.label,
        "typ": str(token.header.get("typ", "JWT")),
        "header": token.header,
        "claims": token.claims,
        "focus": [n for n in focus if n in token.claims],
        "changes": [
            {"claim": name, "before": before, "after": after}
            for name, before, after in token.changes
            if name in DIFF_CLAIMS
        ],
        "previous": token.previous,
        "fingerprint": token_fingerprint(token.token),
    }


# --------------------------------------------------------------------------------------------
# Calls


def call_model(exchange: Any) -> dict[str, Any]:
    parts = urlsplit(exchange.url)
    body = exchange.response_body or ""
    data = _json(body)
    return {
        "method": exchange.method,
        "url": exchange.url,
        "party": party_of(exchange.url),
        "path": parts.path + ("?…" if parts.query else ""),
        "status": exchange.status,
        "error": exchange.error,
        "mcp": mcp_call(exchange.request_body, data),
        "summary": body_summary(body, data, exchange.response_headers.get("content-type", "")),
        "request_headers": exchange.request_headers,
        "request_body": exchange.request_body,
        "response_headers": exchange.response_headers,
        "response_body": body,
    }


def party_of(url: str) -> str:
    """Which part answered, from the URL path (the lab's fixed layout)."""
    if "/realms/" in url:
        return "IdP"
    if "/zts/" in url or "oauth-authorization-server" in url:
        return "PDP"
    if "/zms/" in url:
        return "PDP"
    if "/mcp" in url or "oauth-protected-resource" in url:
        return "MCP server"
    if "/api/docs" in url:
        return "document API"
    return urlsplit(url).netloc or url


def mcp_call(request_body: str, response: Any) -> dict[str, Any] | None:
    """The JSON-RPC method of an MCP request, the tool it names and what came back."""
    request = _json(request_body or "")
    if not isinstance(request, dict) or "jsonrpc" not in request:
        return None
    method = str(request.get("method", ""))
    out: dict[str, Any] = {"method": method}
    raw_params = request.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    if method == "tools/call":
        out["tool"] = params.get("name")
    result = response.get("result") if isinstance(response, dict) else None
    if isinstance(result, dict):
        if method == "tools/list":
            out["tools"] = [t.get("name") for t in result.get("tools", []) if isinstance(t, dict)]
        if method == "tools/call":
            out["is_error"] = bool(result.get("isError"))
            if result.get("isError"):
                content = result.get("content", [])
                texts = [c.get("text", "") for c in content if isinstance(c, dict)]
                out["error"] = " ".join(t for t in texts if t)[:300]
        if method == "initialize":
            out["server"] = (result.get("serverInfo") or {}).get("name")
            out["protocol"] = result.get("protocolVersion")
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        out["error"] = str(response["error"].get("message", ""))[:300]
    return out


def body_summary(body: str, data: Any, content_type: str) -> str:
    """One line about a response body: an OAuth/Athenz error, an HTML page, a JSON shape."""
    if not body.strip():
        return ""
    if "text/html" in content_type:
        return f"an HTML page, {len(body)} characters"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, str):
            detail = data.get("error_description") or data.get("message") or ""
            return f"{error}: {detail}" if detail else error
        if "code" in data and "message" in data:
            return f"{data['code']}: {data['message']}"
        keys = ", ".join(list(data)[:6]) + (", …" if len(data) > 6 else "")
        return f"JSON object: {keys}"
    if isinstance(data, list):
        return f"JSON list of {len(data)}"
    first = body.strip().splitlines()[0]
    return first[:120]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Lineage and sequence (step 12 shows the whole chain)


def lineage(result: StepResult) -> list[dict[str, Any]]:
    """The chain's tokens in order, each once: ID token → typed PDP tokens → the token the MCP
    server obtained by exchange (reported in tool results as ``exchanged_token`` claims)."""
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(label: str, typ: str, claims: dict[str, Any]) -> None:
        key = str(claims.get("jti") or json.dumps(claims, sort_keys=True, default=str))
        if key in seen:
            return
        seen.add(key)
        shown = {n: claims[n] for n in LINEAGE_CLAIMS if n in claims}
        entries.append({"label": label, "typ": typ, "claims": shown})

    for action in result.actions:
        for token in action.tokens:
            typ = str(token.header.get("typ", "JWT"))
            # The IdP's own access/refresh tokens ("JWT"/"Refresh") are not links of the chain.
            if token.label == "id_token" or typ.lower() not in ("jwt", "refresh"):
                add(token.label, typ, token.claims)
        for claims in exchanged_tokens(action.result):
            add("exchanged by the MCP server", "at+jwt", claims)
    return entries if len(entries) >= 2 else []


def exchanged_tokens(result: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(result, dict):
        exchanged = result.get("exchanged_token")
        if isinstance(exchanged, dict):
            found.append(exchanged)
        for key, value in result.items():
            if key != "exchanged_token":
                found.extend(exchanged_tokens(value))
    elif isinstance(result, list):
        for item in result:
            found.extend(exchanged_tokens(item))
    return found


def sequence(result: StepResult) -> list[dict[str, Any]]:
    """The hops of the step's agent and MCP actions, with who called whom.

    The user's browser talks to the IdP's login pages; the agent (``lab agent`` acting for the
    user) calls the token endpoints and the MCP server; the MCP server's own exchange and its
    call to the document API are reported in the tool result, so they appear after the call.
    """
    hops: list[dict[str, Any]] = []
    for index, action in enumerate(result.actions):
        if action.kind not in ("agent", "mcp"):
            continue
        for position, exchange in enumerate(action.exchanges):
            call = call_model(exchange)
            mcp = call["mcp"]
            if mcp and mcp["method"].startswith("notifications/"):
                continue  # plumbing: the learner gains nothing from the initialized notice
            hops.append(
                {
                    "from": caller_of(exchange.url),
                    "to": call["party"],
                    "call": hop_label(call),
                    "status": call["status"],
                    # Where the full call sits in the record (the web view opens it).
                    "action": index,
                    "index": position,
                    "refusal": refusal(call),
                }
            )
        for claims in unique(exchanged_tokens(action.result)):
            hops.append(
                {
                    "from": "MCP server",
                    "to": "PDP",
                    "call": f"RFC 8693 exchange → aud {claims.get('aud', '?')}",
                    "status": 200,
                    "action": index,
                    "index": None,
                    "refusal": None,
                }
            )
            hops.append(
                {
                    "from": "MCP server",
                    "to": "document API",
                    "call": "GET /api/docs (exchanged token)",
                    "status": 200,
                    "action": index,
                    "index": None,
                    "refusal": None,
                }
            )
    return hops if len(hops) >= 2 else []


def refusal(call: dict[str, Any]) -> str | None:
    """Why a hop was refused (the OAuth/Athenz error of a 4xx/5xx, or an MCP tool error)."""
    mcp = call["mcp"] or {}
    status = call["status"]
    if isinstance(status, int) and status >= 400:
        return call["summary"] or call["error"] or f"HTTP {status}"
    if call["error"]:
        return str(call["error"])
    if mcp.get("error"):
        return str(mcp["error"])
    return None


def unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool result reports the exchanged token twice (text and structured content)."""
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True, default=str), item)
    return list(seen.values())


def caller_of(url: str) -> str:
    path = urlsplit(url).path
    if "/protocol/openid-connect/auth" in path or "/login-actions/" in path:
        return "user"
    return "agent"


def hop_label(call: dict[str, Any]) -> str:
    mcp = call["mcp"]
    if mcp:
        if mcp.get("tool"):
            return f"tools/call {mcp['tool']}"
        return str(mcp["method"])
    path = call["path"].removesuffix("?…")
    if path.endswith("/protocol/openid-connect/auth"):
        return "sign in: authorize (PKCE)"
    if "/login-actions/" in path:
        return "sign in: login form"
    if path.endswith("/protocol/openid-connect/token"):
        return "code → ID token"
    if path.endswith("/oauth2/token") or path.endswith("/token"):
        return grant_label(call.get("request_body") or "")
    return f"{call['method']} {path}"


def grant_label(form: str) -> str:
    """What a token request asks for, from its (redacted) form body."""
    fields = dict(parse_qsl(form))
    grant = fields.get("grant_type", "")
    if grant.endswith("token-exchange"):
        wanted = fields.get("requested_token_type", "")
        return "token exchange → ID-JAG" if wanted.endswith("id-jag") else "token exchange"
    if grant.endswith("jwt-bearer"):
        return "jwt-bearer → access token"
    return grant.replace("_", " ") or "token request"
