"""``request``: one HTTP call, with optional signed credentials (``auth``).

The same function turns the request into a curl command for the run output and ``--manual``;
signed assertions appear as ``$(lab sign-assertion PRINCIPAL --aud URL)`` so the command stays
reproducible and no credential is ever printed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from lab.agent.recorder import Recorder
from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, key_id, load_private_key, make_client_assertion
from lab.steps import shell
from lab.steps.actions.base import ActionError, Produced, admin_audience, parse_json, tokens_in_json
from lab.steps.http import describe_transport_error, recording_client
from lab.steps.queries import Outcome
from lab.steps.redact import MIN_GLOBAL_SECRET, REDACTED, SECRET_FIELDS, password_secrets

if TYPE_CHECKING:
    from lab.steps.engine import RunContext

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    method, url = str(spec["method"]).upper(), full_url(spec)
    headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
    form = (
        {str(k): _form_value(v) for k, v in (spec["form"] or {}).items()}
        if "form" in spec
        else None
    )
    secrets = _credential_secrets(form or {})
    auth = spec.get("auth")
    basic = None
    if auth == "admin" or (isinstance(auth, dict) and "admin" in auth):
        principal = ADMIN_PRINCIPAL if auth == "admin" else str(auth["admin"])
        assertion = make_admin_assertion(
            principal, signing_key(principal, ctx), admin_audience(url, ctx)
        )
        headers["Authorization"] = f"Bearer {assertion}"
        secrets.add(assertion)
    elif isinstance(auth, dict) and "bearer" in auth:
        headers["Authorization"] = f"Bearer {auth['bearer']}"
    elif isinstance(auth, dict) and "client_assertion" in auth:
        principal = str(auth["client_assertion"])
        assertion = make_client_assertion(principal, signing_key(principal, ctx), ctx.endpoints.zts)
        form = {
            **(form or {}),
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        secrets.add(assertion)
    elif isinstance(auth, dict) and "basic" in auth:
        basic = (str(auth["basic"][0]), str(auth["basic"][1]))
        if len(basic[1]) >= MIN_GLOBAL_SECRET:
            secrets.add(basic[1])
    recorder = Recorder()
    curl = curl_command(spec, ctx, mask_secrets=True)
    try:
        with recording_client(recorder, ctx.timeout_s) as client:
            response = client.request(
                method, url, headers=headers, auth=basic, **_body_kwargs(spec, form)
            )
    except httpx.HTTPError as exc:
        recorder.record_failure(method, url, describe_transport_error(exc, method, url))
        raise ActionError(describe_transport_error(exc, method, url)) from None
    body = parse_json(response.text)
    outcome = Outcome(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        text=response.text,
        result={
            "status": response.status_code,
            "body": body if body is not None else response.text,
        },
    )
    return Produced(
        outcome=outcome,
        exchanges=list(recorder.exchanges),
        tokens=tokens_in_json(body),
        curl=curl,
        secrets=secrets,
    )


def full_url(spec: dict[str, Any]) -> str:
    url = str(spec["url"])
    params = spec.get("params") or spec.get("query")
    if params:
        url += ("&" if "?" in url else "?") + urlencode(
            {k: _form_value(v) for k, v in params.items()}
        )
    return url


def signing_key(principal: str, ctx: RunContext) -> SigningKey:
    path = ctx.settings.key_file(principal)
    if not path.exists():
        raise ActionError(
            f"no key for {principal} at {path}: run the step that creates it "
            f"(a keygen action, or `lab up` for the lab's own principals)"
        )
    key = load_private_key(path)
    return SigningKey(key=key, kid=key_id(key))


def _body_kwargs(spec: dict[str, Any], form: dict[str, str] | None) -> dict[str, Any]:
    if "json" in spec:
        return {"json": spec["json"]}
    if form is not None:
        return {"data": form}
    if "body" in spec:
        return {"content": str(spec["body"]).encode()}
    return {}


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _credential_secrets(form: dict[str, str]) -> set[str]:
    """Credentials typed into a form, to blank out wherever they appear (a server may echo them).

    Short non-password values are masked by field name only, as is the lab's published password.
    """
    passwords = password_secrets(v for k, v in form.items() if k.lower() == "password")
    return passwords | {
        v
        for k, v in form.items()
        if k.lower() in SECRET_FIELDS and k.lower() != "password" and len(v) >= MIN_GLOBAL_SECRET
    }


# --------------------------------------------------------------------------------------------
# curl


def curl_command(
    spec: dict[str, Any], ctx: RunContext, include_headers: bool = True, mask_secrets: bool = False
) -> str:
    """The request as one copy-pasteable curl command (``\\``-continued lines).

    ``mask_secrets`` (run output) shows passwords and client secrets as ``***``; ``--manual``
    keeps them, since the learner must send them.
    """
    method, url = str(spec["method"]).upper(), full_url(spec)
    options = ["-sS", "-i"] if include_headers else ["-sS"]
    if method == "GET" and ("form" in spec or "json" in spec or "body" in spec):
        options += ["-X", "GET"]
    words: list[list[str]] = [
        ["curl", *options] + ([] if method in ("GET", "POST") else ["-X", method])
    ]
    words[0].append(shell.quote(url))
    auth = spec.get("auth")
    if auth == "admin" or (isinstance(auth, dict) and "admin" in auth):
        principal = ADMIN_PRINCIPAL if auth == "admin" else str(auth["admin"])
        sign = f"lab sign-assertion {principal} --aud {admin_audience(url, ctx)}"
        words.append(["-H", shell.quote(f"Authorization: Bearer {shell.command_marker(sign)}")])
    elif isinstance(auth, dict) and "bearer" in auth:
        words.append(["-H", shell.quote(f"Authorization: Bearer {auth['bearer']}")])
    elif isinstance(auth, dict) and "basic" in auth:
        secret = (
            REDACTED if mask_secrets and "\x00" not in str(auth["basic"][1]) else auth["basic"][1]
        )
        words.append(["-u", shell.quote(f"{auth['basic'][0]}:{secret}")])
    for name, value in (spec.get("headers") or {}).items():
        words.append(["-H", shell.quote(f"{name}: {value}")])
    words.extend(_curl_body(spec, ctx, mask_secrets))
    return " \\\n  ".join(" ".join(w) for w in words)


def _curl_body(spec: dict[str, Any], ctx: RunContext, mask_secrets: bool) -> list[list[str]]:
    if "json" in spec:
        return [
            ["-H", shell.quote("Content-Type: application/json")],
            # json.dumps escapes the NUL that delimits shell markers: put it back for $(...).
            [
                "--data",
                shell.quote(
                    json.dumps(spec["json"], separators=(",", ":")).replace("\\u0000", "\x00")
                ),
            ],
        ]
    if "body" in spec:
        return [["--data-binary", shell.quote(str(spec["body"]))]]
    form = {str(k): _form_value(v) for k, v in (spec.get("form") or {}).items()}
    if mask_secrets:
        form = {k: REDACTED if _is_secret_field(k, v) else v for k, v in form.items()}
    auth = spec.get("auth")
    if isinstance(auth, dict) and "client_assertion" in auth:
        sign = f"lab sign-assertion {auth['client_assertion']} --aud {ctx.endpoints.zts}"
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = shell.command_marker(sign)
    # --data-urlencode keeps each field readable and encodes it exactly as httpx does.
    return [["--data-urlencode", shell.quote(f"{k}={v}")] for k, v in form.items()]


def _is_secret_field(name: str, value: str) -> bool:
    return name.lower() in SECRET_FIELDS and "\x00" not in value
