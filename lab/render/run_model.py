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
                        request_body response_headers response_body summary
                        hops: [call + {by presented tokens}]}]   calls the answering part
                                        made itself (the MCP server's exchange and its call to
                                        the document API, from the tool result's ``_meta``)
               tokens: [{label typ header claims focus changes previous relation diff
                         fingerprint}]
               checks: [{action check query predicate expected actual passed why error
                         reproduce}]}]
    lineage: [{label typ claims fingerprint from where}]   the chain's tokens, each once;
                                        ``where`` locates the token in ``actions``
    sequence: [{from to call status action index hop refusal}]   the hops of the chain, in
                                        order; action/index(/hop) locate the call in ``actions``
    checks tokens errors                flat lists (the original report's keys)
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lab.mcpserver import HOPS_META_KEY
from lab.oauth.jose import token_fingerprint
from lab.steps.engine import MISSING, PRESENTED
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
    actions = [action_model(a) for a in result.actions]
    link_parents(actions, parent_fingerprints(result))
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
        "actions": actions,
        "lineage": lineage(actions, result),
        "sequence": sequence(actions, result),
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
        "tokens": [token_model(t, focus, focus_is_declared(action)) for t in action.tokens],
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


def focus_is_declared(action: ActionResult) -> bool:
    """Whether the step names the claims that matter here (``show:`` or its expectations)."""
    if action.show:
        return True
    for check in action.checks:
        words = check.query.split()
        if len(words) >= 4 and words[0] == "token" and words[2] == "claim":
            return True
    return False


def checked_headers(action: ActionResult) -> list[str]:
    """Response headers the action's expectations read (shown in the default view)."""
    names = []
    for check in action.checks:
        words = check.query.split()
        if len(words) >= 2 and words[0] == "header":
            names.append(words[1].lower())
    return list(dict.fromkeys(names))


def token_model(token: TokenSeen, focus: list[str], focus_declared: bool = True) -> dict[str, Any]:
    diff = [
        {"claim": name, "before": before, "after": after, "kind": change_kind(before, after)}
        for name, before, after in token.changes
    ]
    return {
        "label": token.label,
        "typ": str(token.header.get("typ", "JWT")),
        "header": token.header,
        "claims": token.claims,
        "focus": [n for n in focus if n in token.claims],
        # Whether the focus is the step's own (show: or the claims its checks read), not the
        # default list: the terminal's default view shows only the step's own.
        "focus_declared": focus_declared,
        "changes": [
            {k: d[k] for k in ("claim", "before", "after")}
            for d in diff
            if d["claim"] in DIFF_CLAIMS
        ],
        "previous": token.previous,
        # Until link_parents finds the token this one was exchanged from, the comparison is
        # with the token the run saw just before it.
        "relation": "issued after" if token.previous else None,
        "diff": diff,
        "fingerprint": token_fingerprint(token.token),
    }


def story_changes(diff: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes of :data:`DIFF_CLAIMS` (what the terminal's default view tells)."""
    keys = ("claim", "before", "after")
    return [{k: d[k] for k in keys} for d in diff if d["claim"] in DIFF_CLAIMS]


def change_kind(before: Any, after: Any) -> str:
    if before == MISSING:
        return "added"
    if after == MISSING:
        return "removed"
    return "changed"


def claim_diff(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Every claim added, removed or changed from ``before`` to ``after``."""
    names = list(before) + [n for n in after if n not in before]
    diff = []
    for name in names:
        old, new = before.get(name, MISSING), after.get(name, MISSING)
        if old != new:
            diff.append({"claim": name, "before": old, "after": new, "kind": change_kind(old, new)})
    return diff


def parent_fingerprints(result: StepResult) -> dict[str, str]:
    """Issued token → the token presented to get it, by fingerprint (the engine's record)."""
    parents: dict[str, str] = {}
    for action in result.actions:
        parents.update(action.derived_from)
    return parents


def link_parents(actions: list[dict[str, Any]], parents: dict[str, str]) -> None:
    """Compare each token with the token it was exchanged from, where the run shows one: the
    ID-JAG with the ID token, the access token with the ID-JAG, the MCP server's exchanged
    token with the access token it received."""
    by_fingerprint: dict[str, tuple[str, dict[str, Any]]] = {}
    for action in actions:
        for token in action["tokens"]:
            by_fingerprint.setdefault(
                token["fingerprint"], (f"{action['id']}.{token['label']}", token)
            )
    for _, _, hop in inner_calls(actions):
        for token in hop["tokens"]:
            parent = next(
                (p["fingerprint"] for p in hop["presented"] if p["where"] in PRESENTED), None
            )
            if parent is not None:
                parents.setdefault(token["fingerprint"], parent)
    for token in all_tokens(actions):
        found = by_fingerprint.get(parents.get(token["fingerprint"], ""))
        if found is None:
            continue
        label, parent = found
        diff = claim_diff(parent["claims"], token["claims"])
        token.update(
            previous=label,
            relation="exchanged from",
            diff=diff,
            changes=story_changes(diff),
        )


def inner_calls(
    actions: list[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(action, call, hop) for every call a part made itself while answering one of ours."""
    return [(a, c, h) for a in actions for c in a["calls"] for h in c["hops"]]


def all_tokens(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tokens = [t for a in actions for t in a["tokens"]]
    return tokens + [t for _, _, hop in inner_calls(actions) for t in hop["tokens"]]


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
        "hops": [hop_model(h) for h in reported_hops(data)],
    }


#: The label of the token the MCP server obtained (the terminal looks for "exchanged").
EXCHANGED_LABEL = "exchanged by the MCP server"


def reported_hops(response: Any) -> list[dict[str, Any]]:
    """The MCP server's own calls, as its tools/call result reports them in ``_meta``."""
    result = response.get("result") if isinstance(response, dict) else None
    meta = result.get("_meta") if isinstance(result, dict) else None
    hops = meta.get(HOPS_META_KEY) if isinstance(meta, dict) else None
    return [h for h in hops if isinstance(h, dict)] if isinstance(hops, list) else []


def hop_model(hop: dict[str, Any]) -> dict[str, Any]:
    """One call the MCP server made (lab.mcpserver.hops), as a call of the run model."""
    as_exchange = SimpleNamespace(
        method=str(hop.get("method") or ""),
        url=str(hop.get("url") or ""),
        status=hop.get("status"),
        error=hop.get("error"),
        request_headers=dict(hop.get("request_headers") or {}),
        request_body=str(hop.get("request_body") or ""),
        response_headers=dict(hop.get("response_headers") or {}),
        response_body=str(hop.get("response_body") or ""),
    )
    call = call_model(as_exchange)
    call["by"] = "MCP server"
    call["presented"] = [p for p in hop.get("presented") or [] if isinstance(p, dict)]
    call["tokens"] = [
        {
            "label": EXCHANGED_LABEL,
            "typ": str((t.get("header") or {}).get("typ", "JWT")),
            "header": t.get("header") or {},
            "claims": t.get("claims") or {},
            "focus": [n for n in (*DEFAULT_FOCUS, "act") if n in (t.get("claims") or {})],
            "changes": [],
            "previous": None,
            "relation": None,
            "diff": [],
            "fingerprint": t.get("fingerprint"),
            # Checked where the token is: it never leaves the MCP server (lab.mcpserver.hops).
            "signature": {**(t.get("signature") or {}), "checked_by": t.get("checked_by")},
        }
        for t in hop.get("tokens") or []
        if isinstance(t, dict)
    ]
    return call


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


def lineage(actions: list[dict[str, Any]], result: StepResult) -> list[dict[str, Any]]:
    """The chain's tokens in order, each once: the user's ID token, the typed PDP tokens (ID-JAG,
    access token), and the token the MCP server obtained by exchange for the document API.

    ``where`` locates each in ``actions`` (``{"action", "token"}``, or ``{"action", "call",
    "hop", "token"}`` for the MCP server's); ``from`` names the token it was exchanged from."""
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(
        label: str, typ: str, claims: dict[str, Any], token: dict[str, Any] | None, where: Any
    ) -> None:
        key = str(claims.get("jti") or json.dumps(claims, sort_keys=True, default=str))
        if key in seen:
            return
        seen.add(key)
        shown = {n: claims[n] for n in LINEAGE_CLAIMS if n in claims}
        entries.append(
            {
                "label": label,
                "typ": typ,
                "claims": shown,
                "fingerprint": token.get("fingerprint") if token else None,
                "from": token.get("previous") if token and token.get("relation") else None,
                "where": where,
            }
        )

    for index, (action, model) in enumerate(zip(result.actions, actions, strict=True)):
        for position, token in enumerate(model["tokens"]):
            typ = token["typ"]
            # The IdP's own access/refresh tokens ("JWT"/"Refresh") are not links of the chain.
            if token["label"] == "id_token" or typ.lower() not in ("jwt", "refresh"):
                add(
                    token["label"],
                    typ,
                    token["claims"],
                    token,
                    {"action": index, "token": position},
                )
        reported = False
        for c, call in enumerate(model["calls"]):
            for h, hop in enumerate(call["hops"]):
                for t, token in enumerate(hop["tokens"]):
                    reported = True
                    where = {"action": index, "call": c, "hop": h, "token": t}
                    add(token["label"], token["typ"], token["claims"], token, where)
        if not reported:
            # An MCP server that reports no hops (an older image) still names the claims.
            for claims in exchanged_tokens(action.result):
                add(EXCHANGED_LABEL, "at+jwt", claims, None, None)
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


def sequence(actions: list[dict[str, Any]], result: StepResult) -> list[dict[str, Any]]:
    """The hops of the step's agent and MCP actions, with who called whom.

    The user's browser talks to the IdP's login pages; the agent (``lab agent`` acting for the
    user) calls the token endpoints and the MCP server; the MCP server's own exchange and its
    call to the document API come from its tool result's ``_meta`` and follow the tools/call
    that caused them (``hop`` locates them in that call's ``hops``).
    """
    hops: list[dict[str, Any]] = []
    for index, (action, model) in enumerate(zip(result.actions, actions, strict=True)):
        if action.kind not in ("agent", "mcp"):
            continue
        reported = False
        for position, call in enumerate(model["calls"]):
            mcp = call["mcp"]
            if mcp and mcp["method"].startswith("notifications/"):
                continue  # plumbing: the learner gains nothing from the initialized notice
            hops.append(
                {
                    "from": caller_of(call["url"]),
                    "to": call["party"],
                    "call": hop_label(call),
                    "status": call["status"],
                    # Where the full call sits in the record (the web view opens it).
                    "action": index,
                    "index": position,
                    "hop": None,
                    "refusal": refusal(call),
                }
            )
            for inner, hop in enumerate(call["hops"]):
                reported = True
                hops.append(
                    {
                        "from": "MCP server",
                        "to": hop["party"],
                        "call": inner_label(hop),
                        "status": hop["status"],
                        "action": index,
                        "index": position,
                        "hop": inner,
                        "refusal": refusal(hop),
                    }
                )
        if reported:
            continue
        # An MCP server that reports no hops: what its tool result says it did.
        for claims in unique(exchanged_tokens(action.result)):
            for to, label in (
                ("PDP", f"RFC 8693 exchange → aud {claims.get('aud', '?')}"),
                ("document API", "GET /api/docs (exchanged token)"),
            ):
                hops.append(
                    {
                        "from": "MCP server",
                        "to": to,
                        "call": label,
                        "status": 200,
                        "action": index,
                        "index": None,
                        "hop": None,
                        "refusal": None,
                    }
                )
    return hops if len(hops) >= 2 else []


def inner_label(hop: dict[str, Any]) -> str:
    """The MCP server's calls: its RFC 8693 exchange (into which audience) and its API call."""
    fields = dict(parse_qsl(hop.get("request_body") or ""))
    if fields.get("grant_type", "").endswith("token-exchange"):
        return f"RFC 8693 exchange → aud {fields.get('audience') or '?'}"
    return f"{hop['method']} {hop['path'].removesuffix('?…')} (exchanged token)"


def refusal(call: dict[str, Any]) -> str | None:
    """Why a hop was refused: the OAuth error and, where the PDP gave it, Athenz's own code and
    message (the wording of the public tutorial); or the transport error, or the MCP tool error."""
    mcp = call["mcp"] or {}
    status = call["status"]
    if isinstance(status, int) and status >= 400:
        return both_dialects(_json(call["response_body"] or "")) or (
            call["summary"] or call["error"] or f"HTTP {status}"
        )
    if call["error"]:
        return str(call["error"])
    if mcp.get("error"):
        return str(mcp["error"])
    return None


def both_dialects(body: Any) -> str | None:
    """``error: error_description (Athenz code: message)`` from a refusal body, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None
    text = str(body["error"])
    if body.get("error_description"):
        text += f": {body['error_description']}"
    if body.get("message") and "code" in body:
        text += f" (Athenz {body['code']}: {body['message']})"
    return text


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
