"""``lab decode TOKEN`` and ``lab sign-assertion PRINCIPAL --aud URL``."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from lab.cli import common

app = typer.Typer()


@app.command()
def decode(
    token: str = typer.Argument(..., help="A JWT (or - to read it from standard input)."),
    json_output: bool = typer.Option(
        False, "--json", help="Print header, claims and verdict as JSON."
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Check the signature against the issuer's JWKS."
    ),
) -> None:
    """Decode a token, check its signature against the lab's JWKS (PDP or IdP, by iss), show expiry.

    Exits 1 when the signature does not verify or the token has expired.
    """
    from lab.oauth.jose import JwtValidationError, unverified_claims, unverified_header

    raw = sys.stdin.read().strip() if token == "-" else token.strip()
    try:
        header = unverified_header(raw)
        claims = unverified_claims(raw)
    except JwtValidationError as exc:
        common.fail(
            f"this is not a JWT: {exc.reason}",
            "pass the whole token (three dot-separated parts)",
            common.ExitCode.USAGE,
        )
    verdict = (
        signature_verdict(raw, claims)
        if verify
        else {"checked": False, "valid": None, "detail": "not checked"}
    )
    expiry = expiry_of(claims)
    if json_output:
        common.print_json(
            {"header": header, "claims": claims, "signature": verdict, "expiry": expiry}
        )
    else:
        print_decoded(header, claims, verdict, expiry)
    if verdict.get("valid") is False or expiry.get("expired"):
        raise typer.Exit(common.ExitCode.FAILED)


def jwks_for_issuer(iss: Any) -> str | None:
    """The lab JWKS that signs tokens with this ``iss``: the PDP's (ZTS) or the IdP's."""
    settings = common.settings()
    try:
        endpoints = common.backend(settings).endpoints()
    except Exception:  # noqa: BLE001 - decoding still works with the configured endpoints
        endpoints = settings.endpoints
    if iss == endpoints.zts:
        return endpoints.zts_jwks
    if iss == endpoints.idp_issuer:
        return endpoints.idp_jwks
    return None


def signature_verdict(token: str, claims: dict[str, Any]) -> dict[str, Any]:
    import jwt

    from lab.oauth.jose import JwksCache, JwtValidationError, algorithm_for, unverified_header

    url = jwks_for_issuer(claims.get("iss"))
    if url is None:
        return {
            "checked": False,
            "valid": None,
            "detail": f"issuer {claims.get('iss')!r} is not one of the lab's",
        }
    try:
        key = JwksCache(url).resolve(unverified_header(token).get("kid"))
        # The algorithm comes from the published key, never from the token's own header.
        algorithm = algorithm_for(key)
        jwt.decode(
            token, key, algorithms=[algorithm], options={"verify_aud": False, "verify_exp": False}
        )
    except JwtValidationError as exc:
        return {"checked": True, "valid": False, "jwks": url, "detail": exc.reason}
    except jwt.PyJWTError as exc:
        return {"checked": True, "valid": False, "jwks": url, "detail": str(exc)}
    return {"checked": True, "valid": True, "jwks": url, "detail": "signature verified"}


def expiry_of(claims: dict[str, Any]) -> dict[str, Any]:
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return {"exp": None, "expired": False, "detail": "no exp claim"}
    left = int(exp - time.time())
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(exp))
    detail = f"expired {-left} s ago ({when})" if left < 0 else f"expires in {left} s ({when})"
    return {"exp": exp, "expired": left < 0, "seconds_left": left, "detail": detail}


def print_decoded(header: dict, claims: dict, verdict: dict, expiry: dict) -> None:
    import json

    from rich.markup import escape
    from rich.panel import Panel
    from rich.syntax import Syntax

    console = common.out()
    console.print(
        Panel(Syntax(json.dumps(header, indent=2), "json", theme="ansi_dark"), title="header")
    )
    console.print(
        Panel(Syntax(json.dumps(claims, indent=2), "json", theme="ansi_dark"), title="claims")
    )
    mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]?[/]"}[verdict.get("valid")]
    console.print(f"{mark} signature: {escape(verdict['detail'])}")
    console.print(
        f"{'[red]✗[/]' if expiry.get('expired') else '[green]✓[/]'} {escape(expiry['detail'])}"
    )


@app.command("sign-assertion")
def sign_assertion(
    principal: str = typer.Argument(
        ...,
        help="Whose key signs, e.g. user.athenz_admin.",
        callback=common.principal_argument,
    ),
    aud: str = typer.Option(
        ..., "--aud", help="Audience: the server's base URL (ZMS URL for ZMS)."
    ),
) -> None:
    """Print a fresh signed principal assertion (for curl's Authorization: Bearer header)."""
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey, key_id, load_private_key

    path = common.settings().key_file(principal)
    if not path.exists():
        common.fail(
            f"there is no key for {principal} at {path}",
            "run `lab up` (lab keys) or the step that creates it (step 3 for human.idjag-learner)",
        )
    key = load_private_key(path)
    typer.echo(make_admin_assertion(principal, SigningKey(key, key_id(key)), aud))
