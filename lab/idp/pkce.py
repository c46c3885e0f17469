"""PKCE (RFC 7636) checks as Keycloak makes them, with Keycloak's error wording."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from lab.oauth.errors import InvalidGrant, InvalidRequest

#: RFC 7636 §4.1: code_verifier = 43*128unreserved; §4.2: an S256 challenge is 43 base64url chars.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")

SUPPORTED_METHODS = ("S256", "plain")


def s256(verifier: str) -> str:
    """BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_challenge(
    challenge: str | None, method: str | None, required_method: str | None
) -> str | None:
    """Validate the authorization request's PKCE parameters; return the method to store.

    Raises :class:`InvalidRequest` (sent back on the redirect, RFC 6749 §4.1.2.1) with
    Keycloak's descriptions.
    """
    if not challenge:
        if required_method:
            # The client is configured with pkce.code.challenge.method: PKCE is mandatory.
            raise InvalidRequest("Missing parameter: code_challenge_method")
        return None
    method = method or "plain"  # RFC 7636 §4.3: absent method means plain
    if method not in SUPPORTED_METHODS:
        raise InvalidRequest("Invalid parameter: code_challenge_method")
    if required_method and method != required_method:
        raise InvalidRequest("Invalid parameter: code challenge method is not configured one")
    if not _CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("Invalid parameter: code_challenge")
    return method


def verify(verifier: str | None, challenge: str | None, method: str | None) -> None:
    """RFC 7636 §4.6: the token request's verifier must reproduce the stored challenge."""
    if challenge is None:
        if verifier:
            # The code was issued without PKCE; a verifier now cannot be checked against anything.
            raise InvalidGrant("PKCE verification failed: code challenge not specified")
        return
    if not verifier:
        raise InvalidGrant("PKCE code verifier not specified")
    if not _VERIFIER.fullmatch(verifier):
        raise InvalidGrant("PKCE verification failed: Invalid code verifier")
    expected = s256(verifier) if method == "S256" else verifier
    # Constant-time compare: the challenge is a secret-derived value.
    if not hmac.compare_digest(expected, challenge):
        raise InvalidGrant("PKCE verification failed: Code mismatch")
