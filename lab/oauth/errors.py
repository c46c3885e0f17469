"""OAuth error classes shared by every server in the lab.

Hierarchy::

    OAuthError                      RFC 6749 §5.2 / RFC 6750 §3.1 error, carries status + headers
    ├── InvalidRequest   400        malformed request, missing parameter
    ├── InvalidClient    401        client authentication failed (Basic challenge when 401)
    ├── InvalidGrant     400        grant / assertion / subject token invalid, expired, replayed
    ├── UnauthorizedClient 400/403  client may not use this grant or act for this subject
    ├── UnsupportedGrantType 400
    ├── InvalidScope     400
    ├── InvalidTarget    400        RFC 8693 §2.2.2: unacceptable audience/resource
    ├── AccessDenied     403        policy refused (Athenz answers 403 here)
    ├── NotFound         404        Athenz "No such domain" and friends
    ├── InvalidToken     401        resource server: bad bearer token (RFC 6750)
    ├── MissingToken     401        resource server: no credentials at all (no error code sent)
    └── InsufficientScope 403       resource server: token valid, permission missing

Endpoints only raise; each app turns these into responses in one place
(:mod:`lab.oauth.starlette`). Token endpoint bodies carry both dialects: RFC 6749 ``error`` /
``error_description`` and Athenz's ``code`` / ``message`` (ARCHITECTURE.md, Errors).
"""

from __future__ import annotations

from typing import Any, ClassVar


class OAuthError(Exception):
    """An error a client is allowed to see. Never carries a token or a secret."""

    error: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        athenz_message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status_code = status if status is not None else self.status
        #: Athenz's own wording; defaults to the description so ``message`` is always present.
        self.athenz_message = athenz_message or description
        self.extra_headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": self.description,
            "code": self.status_code,
            "message": self.athenz_message,
        }

    def headers(self) -> dict[str, str]:
        return dict(self.extra_headers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.description!r})"


class InvalidRequest(OAuthError):
    """The request is missing a required parameter, includes an unsupported value, or is
    otherwise malformed (RFC 6749 §5.2)."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, no client authentication included, or
    unsupported authentication method) (RFC 6749 §5.2)."""

    error = "invalid_client"
    status = 401

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        # RFC 6749 §5.2: a 401 here MUST carry a challenge for the scheme the client may use.
        if self.status_code == 401:
            headers.setdefault("WWW-Authenticate", 'Basic realm="zts"')
        return headers


class InvalidGrant(OAuthError):
    """The grant or assertion is invalid, expired, revoked, replayed, or was issued to another
    client (RFC 6749 §5.2, RFC 7521 §4.1.1)."""

    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """The authenticated client is not authorized to use this grant type (RFC 6749 §5.2)."""

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """The grant type is not supported by the authorization server (RFC 6749 §5.2)."""

    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """The requested scope is invalid, unknown, malformed, or exceeds what was granted."""

    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """The server is unwilling or unable to issue a token for the requested resource or
    audience (RFC 8693 §2.2.2)."""

    error = "invalid_target"


class AccessDenied(OAuthError):
    """Policy refused the request. Athenz answers these with 403 and its own message."""

    error = "access_denied"
    status = 403


class NotFound(OAuthError):
    """The named object does not exist (Athenz: ``No such domain: x``)."""

    error = "not_found"
    status = 404


class Conflict(OAuthError):
    """The object already exists or the write conflicts with current state."""

    error = "conflict"
    status = 409


class PayloadTooLarge(OAuthError):
    """The request body exceeds the server's limit."""

    error = "invalid_request"
    status = 413


class _BearerError(OAuthError):
    """Resource-server errors (RFC 6750 §3): the challenge is built here, not in endpoints."""

    realm: ClassVar[str | None] = None
    send_error_code: ClassVar[bool] = True

    def __init__(
        self,
        description: str,
        *,
        resource_metadata: str | None = None,
        realm: str | None = None,
        scope: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(description, status=status)
        self.resource_metadata = resource_metadata
        self.challenge_realm = realm
        self.scope = scope

    def challenge(self) -> str:
        params: list[str] = []
        if self.challenge_realm:
            params.append(f'realm="{self.challenge_realm}"')
        if self.send_error_code:
            params.append(f'error="{self.error}"')
            params.append(f'error_description="{_quote(self.description)}"')
        if self.scope:
            params.append(f'scope="{self.scope}"')
        if self.resource_metadata:
            params.append(f'resource_metadata="{self.resource_metadata}"')
        return "Bearer " + ", ".join(params) if params else "Bearer"

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        headers["WWW-Authenticate"] = self.challenge()
        return headers

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


class MissingToken(_BearerError):
    """No credentials were sent: RFC 6750 §3.1 says the challenge SHOULD NOT carry an error
    code then, only the scheme (and, for MCP, ``resource_metadata``)."""

    error = "invalid_token"
    status = 401
    send_error_code = False

    def body(self) -> dict[str, Any]:
        # The body still tells a human what happened; the challenge stays code-free.
        return {"error": "unauthorized", "error_description": self.description}


class InvalidToken(_BearerError):
    """The access token is expired, revoked, malformed, or invalid for other reasons
    (RFC 6750 §3.1)."""

    error = "invalid_token"
    status = 401


class InvalidBearerRequest(_BearerError):
    """A malformed request at a resource server, e.g. a parameter sent twice (RFC 6750 §3.1:
    400, the challenge carrying ``invalid_request``)."""

    error = "invalid_request"
    status = 400


class InsufficientScope(_BearerError):
    """The request requires higher privileges than provided by the access token
    (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status = 403


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
