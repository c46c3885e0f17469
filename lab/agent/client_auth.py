"""How the agent proves who it is at a token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).

Three methods, chosen by configuration and by what the authorization server advertises in
``token_endpoint_auth_methods_supported`` (RFC 8414 §2):

- ``private_key_jwt`` (the lab's default): a fresh single-use JWT signed with the client's key,
  ``aud`` = the authorization server's issuer (RFC 7523 §3; draft-ietf-oauth-rfc7523bis).
- ``client_secret_basic``: ``Authorization: Basic`` over the form-urlencoded id and secret
  (RFC 6749 §2.3.1).
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body.

A secret never appears in ``repr`` and the recorder masks it in every exchange.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from lab.oauth.jose import SigningKey, make_client_assertion
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER

PRIVATE_KEY_JWT = "private_key_jwt"
CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
NONE = "none"
METHODS = (PRIVATE_KEY_JWT, CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, NONE)

#: With no configured method, the strongest one we hold credentials for and the server accepts.
PREFERENCE = (PRIVATE_KEY_JWT, CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, NONE)


class ClientAuthError(ValueError):
    """No authentication method both sides can use; the message names both lists."""


@dataclass(frozen=True)
class ClientCredentials:
    """A client's registration at one authorization server."""

    client_id: str
    key: SigningKey | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    #: The configured method; None chooses from what the server advertises.
    method: str | None = None
    #: A public client (``none``) sends only its ``client_id`` (RFC 6749 §2.3, OAuth 2.1 §2.4).
    public: bool = False

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ClientAuthError(
                f"unknown client authentication method {self.method!r}: use one of "
                + ", ".join(METHODS)
            )

    @property
    def held(self) -> tuple[str, ...]:
        """The methods these credentials can perform."""
        held = []
        if self.key is not None:
            held.append(PRIVATE_KEY_JWT)
        if self.secret:
            held += [CLIENT_SECRET_BASIC, CLIENT_SECRET_POST]
        if self.public:
            held.append(NONE)
        return tuple(held)


def choose_method(credentials: ClientCredentials, advertised: Sequence[str]) -> str:
    """The method to use at a server advertising ``advertised`` (RFC 8414 §2)."""
    held = credentials.held
    if credentials.method is not None:
        if credentials.method not in held:
            raise ClientAuthError(
                f"{credentials.client_id} is configured for {credentials.method} but has no "
                f"{'key' if credentials.method == PRIVATE_KEY_JWT else 'secret'} for it"
            )
        if advertised and credentials.method not in advertised:
            raise ClientAuthError(
                f"{credentials.client_id} is configured for {credentials.method}, but the "
                f"authorization server accepts only {', '.join(advertised)}"
            )
        return credentials.method
    for method in PREFERENCE:
        if method in held and (not advertised or method in advertised):
            return method
    raise ClientAuthError(
        f"{credentials.client_id} can use {', '.join(held) or 'no method'}, but the "
        f"authorization server accepts only {', '.join(advertised)}"
    )


def authenticate(
    form: dict[str, str],
    credentials: ClientCredentials,
    method: str,
    audience: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of a token request authenticated with ``method``."""
    form = dict(form)
    headers: dict[str, str] = {}
    if method == PRIVATE_KEY_JWT:
        assert credentials.key is not None  # choose_method checked it
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE_JWT_BEARER
        form["client_assertion"] = make_client_assertion(
            credentials.client_id, credentials.key, audience
        )
    elif method == CLIENT_SECRET_BASIC:
        headers["Authorization"] = basic_authorization(
            credentials.client_id, credentials.secret or ""
        )
    elif method == CLIENT_SECRET_POST:
        form["client_id"] = credentials.client_id
        form["client_secret"] = credentials.secret or ""
    elif method == NONE:
        form["client_id"] = credentials.client_id
    else:
        raise ClientAuthError(f"unknown client authentication method {method!r}")
    return form, headers


def basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode each part, then base64 ``id:secret``."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()
