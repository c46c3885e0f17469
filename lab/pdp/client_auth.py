"""Client authentication at the ZTS token and introspection endpoints (RFC 6749 §2.3).

- ``private_key_jwt`` (RFC 7523 §2.2): a JWT signed by a registered service key (or the admin's),
  ``iss = sub = client``, ``aud`` = the ZTS issuer or token endpoint, single-use ``jti``.
- ``client_secret_basic`` (RFC 6749 §2.3.1): ``Authorization: Basic`` with form-urlencoded id and
  secret. The MCP SDK's SEP-990 client also repeats ``client_id`` in the body; that is tolerated
  when it names the same client.
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the body.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import unquote

from lab.oauth.errors import InvalidClient, InvalidRequest
from lab.oauth.jose import JwtValidationError, unverified_claims, verify_jwt
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER
from lab.pdp.core import Pdp
from lab.pdp.names import PRINCIPAL_RE

REPLAYED_CLIENT_ASSERTION = "client assertion jti has already been used"

#: Longest client assertion accepted (``exp - iat`` and ``exp - now``), in seconds.
MAX_CLIENT_ASSERTION_LIFETIME_S = 300

AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post")


def refuse_client(reason: str) -> InvalidClient:
    return InvalidClient(reason, athenz_message=f"Invalid client assertion: {reason}")


def authenticate_client(
    pdp: Pdp,
    form: Mapping[str, str],
    headers: Mapping[str, str],
    single_use: list[tuple[str, int]] | None = None,
) -> str:
    """The authenticated client's principal name, or :class:`InvalidClient` (401).

    With ``single_use`` the client assertion's jti is appended to that list, for the caller to
    record together with its audit record (one transaction, whose insert refuses a used jti);
    the caller answers a replay before any other refusal (``TokenEndpoint``).
    """
    basic = _basic_credentials(headers)
    assertion = form.get("client_assertion")
    methods = [
        name
        for name, used in (
            ("private_key_jwt", assertion is not None),
            ("client_secret_basic", basic is not None),
            ("client_secret_post", form.get("client_secret") is not None),
        )
        if used
    ]
    if len(methods) > 1:
        # RFC 6749 §2.3: the client MUST NOT use more than one authentication method per request.
        raise InvalidRequest(
            f"more than one client authentication method used: {', '.join(methods)}"
        )
    if not methods:
        raise InvalidClient("Unauthenticated request", athenz_message="Unauthenticated request")
    if methods[0] == "private_key_jwt":
        client = _private_key_jwt(pdp, form, single_use)
    elif basic is not None:
        client = _client_secret(pdp, *basic)
    else:
        # client_secret_post was chosen because the form has a client_secret.
        client = _client_secret(pdp, form.get("client_id", ""), form["client_secret"])
    body_client = form.get("client_id")
    if body_client and body_client.lower() != client:
        raise refuse_client("client_id does not match the authenticated client")
    return client


def _basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise refuse_client("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise refuse_client("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote(client_id), unquote(secret)


def _client_secret(pdp: Pdp, client_id: str, secret: str) -> str:
    client = client_id.strip().lower()
    if not client or not secret:
        raise refuse_client("client_id and client_secret are required")
    if not PRINCIPAL_RE.fullmatch(client) or not pdp.check_secret(client, secret):
        raise refuse_client("unknown client or wrong client secret")
    return client


def _private_key_jwt(
    pdp: Pdp, form: Mapping[str, str], single_use: list[tuple[str, int]] | None
) -> str:
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT_BEARER:
        raise refuse_client(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE_JWT_BEARER}")
    token = form["client_assertion"]  # present: that is how this method was chosen
    try:
        claimed = unverified_claims(token).get("iss")
    except JwtValidationError as exc:
        raise refuse_client(exc.reason) from None
    if not isinstance(claimed, str) or not PRINCIPAL_RE.fullmatch(claimed.lower()):
        raise refuse_client("iss must name the client principal")
    try:
        # RFC 7523 §3: aud identifies the authorization server (issuer or token endpoint).
        claims = verify_jwt(
            token,
            pdp.key_resolver(claimed.lower()),
            audience=[pdp.issuer, pdp.token_endpoint],
            required=("exp", "iat", "iss", "sub", "jti"),
            # Athenz and Keycloak bound client assertions to minutes; a 10-year one is refused.
            max_lifetime=MAX_CLIENT_ASSERTION_LIFETIME_S,
        )
    except JwtValidationError as exc:
        raise refuse_client(exc.reason) from None
    if claims["iss"] != claims["sub"]:
        raise refuse_client("iss and sub must both name the client")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 128:
        raise refuse_client("jti must be a string of at most 128 characters")
    # RFC 7523 §3 item 7: the authorization server may ensure JWTs are not replayed.
    key, exp = f"client:{claims['jti']}", int(claims["exp"])
    if single_use is None:
        if not pdp.store.use_jti(key, exp):
            raise refuse_client(REPLAYED_CLIENT_ASSERTION)
    else:
        single_use.append((key, exp))
    return claimed.lower()
