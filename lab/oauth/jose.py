"""Keys, signing and verification for every JWT in the lab (pyjwt + cryptography).

Nothing here parses JWTs by hand: pyjwt does the JOSE work, this module fixes the policy around
it (RFC 8725): an explicit algorithm allow-list per key, the header ``typ`` checked for each
kind of token, ``kid`` looked up in a JWKS that refreshes on an unknown kid, no ``jku``/``x5u``.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import math
import os
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from lab import nonblocking

if TYPE_CHECKING:
    import httpx

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: Algorithms the lab accepts anywhere. ``none`` and every HMAC are excluded by construction
#: (RFC 8725 §3.1: the verifier fixes the set; HS256-with-the-RSA-public-key fails here).
ALLOWED_ALGORITHMS = ("RS256", "ES256")

#: Clock skew tolerated on exp/nbf/iat, in seconds (RFC 9068 §4: "a few minutes at most").
LEEWAY = 30


class JwtValidationError(Exception):
    """A token failed verification; ``reason`` is safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Keys


def generate_private_key(alg: str = "ES256") -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported algorithm {alg!r}; use one of {ALLOWED_ALGORITHMS}")


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    return (
        "ES256"
        if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
        else "RS256"
    )


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    public = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: only RSA and P-256 EC keys are supported")
    return key


def load_public_key(pem: bytes | str) -> PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("only RSA and P-256 EC public keys are supported")
    return key


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write a PEM private key readable by its owner only (0600), atomically, never wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, private_pem(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    path.with_suffix(".pub.pem").write_bytes(public_pem(key))


def ensure_private_key(path: Path, alg: str = "ES256") -> PrivateKey:
    """Load the key at ``path``, creating it (0600, plus ``.pub.pem`` beside it) if absent."""
    if path.exists():
        return load_private_key(path)
    key = generate_private_key(alg)
    write_private_key(path, key)
    return key


def key_id(key: PrivateKey | PublicKey) -> str:
    """A stable key id: the first 16 characters of the RFC 7638 thumbprint."""
    return jwk_thumbprint(public_jwk(key))[:16]


def public_jwk(key: PrivateKey | PublicKey, kid: str | None = None) -> dict[str, Any]:
    public = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    alg = algorithm_for(public)
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    jwk["alg"] = alg
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url without padding."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def jwks(keys: Iterable[tuple[PrivateKey | PublicKey, str]]) -> dict[str, Any]:
    return {"keys": [public_jwk(key, kid) for key, kid in keys]}


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    codec = ECAlgorithm if jwk.get("kty") == "EC" else RSAAlgorithm
    key = codec.from_jwk(dict(jwk))
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise JwtValidationError("the JWKS entry is not a public key")
    return key


@dataclass(frozen=True)
class SigningKey:
    """A private key with the ``kid`` it is published under."""

    key: PrivateKey
    kid: str

    @property
    def alg(self) -> str:
        return algorithm_for(self.key)

    @classmethod
    def load_or_create(cls, path: Path, alg: str = "ES256") -> SigningKey:
        key = ensure_private_key(path, alg)
        return cls(key=key, kid=key_id(key))

    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.key, self.kid)

    def sign(self, claims: Mapping[str, Any], typ: str | None = None) -> str:
        headers: dict[str, Any] = {"kid": self.kid}
        if typ is not None:
            headers["typ"] = typ
        return jwt.encode(dict(claims), self.key, algorithm=self.alg, headers=headers)


# --------------------------------------------------------------------------------------------
# Encoding helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ybase64_encode(data: bytes) -> str:
    """Athenz's YBase64: standard base64 with ``+/=`` mapped to ``._-``."""
    return base64.b64encode(data).decode().translate(str.maketrans("+/=", "._-"))


def ybase64_decode(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("._-", "+/=")), validate=True)


def token_fingerprint(token: str) -> str:
    """What logs carry instead of a token: the first 12 hex chars of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def new_jti() -> str:
    return uuid.uuid4().hex


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def now() -> int:
    return int(time.time())


# --------------------------------------------------------------------------------------------
# Reading tokens


#: Longest token any verifier reads (the lab's are under 2 KB; Keycloak's under 4 KB).
MAX_TOKEN_LENGTH = 16_384

#: RFC 7519 §2 NumericDate claims. They must be JSON numbers (not strings, not booleans),
#: finite and below 2^53, so that nothing downstream (SQLite's 64-bit integers, ``int()``)
#: can overflow on them.
TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
MAX_NUMERIC_DATE = 2**53

#: What a hostile token can make pyjwt's JSON parsing raise besides PyJWTError.
_PARSE_ERRORS = (RecursionError, ValueError, TypeError, OverflowError, UnicodeError)


def _check_length(token: object) -> str:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise JwtValidationError("token is empty or too large")
    return token


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, for routing only (which key, which kind). Never trusted for access."""
    header, _, _ = _unverified(_check_length(token))
    return dict(header)


def unverified_claims(token: str) -> dict[str, Any]:
    """Claims without checking anything: for display and for picking the issuer to check against."""
    _, claims, error = _unverified(_check_length(token))
    if claims is None:
        raise JwtValidationError(error or "malformed token claims")
    return dict(claims)


@functools.lru_cache(maxsize=64)
def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """(header, claims or None, why the claims are unreadable), from one parse of ``token``.

    A token is read unverified several times per request (the caller picks the issuer or the
    kind, then :func:`verify_jwt` checks the header and the raw NumericDates), and pyjwt's
    parse checks every character of every segment in Python: one parse per token, kept for a
    few recent tokens (bounded; a malformed token is never kept: the error is raised again).
    """
    try:
        complete = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
    except (jwt.PyJWTError, *_PARSE_ERRORS) as exc:
        # The header alone may still be readable (a kind of token whose payload is not JSON).
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as header_exc:
            raise JwtValidationError(f"malformed token: {header_exc}") from None
        except _PARSE_ERRORS:
            raise JwtValidationError("malformed token header") from None
        if not isinstance(header, dict):
            raise JwtValidationError("malformed token header") from None
        if isinstance(exc, jwt.PyJWTError):
            return header, None, f"malformed token: {exc}"
        return header, None, "malformed token claims"
    header, claims = complete["header"], complete["payload"]
    if not isinstance(header, dict):
        raise JwtValidationError("malformed token header")
    if not isinstance(claims, dict):
        return header, None, "malformed token claims"
    return header, claims, None


def check_numeric_dates(claims: Mapping[str, Any]) -> None:
    """RFC 7519 §4.1.4-6: ``exp``/``iat``/``nbf`` are NumericDates — JSON numbers. A string
    ``"exp": "9999999999"`` (which pyjwt would coerce), a boolean, NaN or an integer beyond
    2^53 is refused."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value < MAX_NUMERIC_DATE
        ):
            raise JwtValidationError(f"{name} must be a NumericDate (seconds since the epoch)")


KeyResolver = Callable[[str | None], PublicKey]


def verify_jwt(
    token: str,
    resolve_key: KeyResolver,
    *,
    typ: str | Iterable[str | None] | None = None,
    issuer: str | Iterable[str] | None = None,
    audience: str | Iterable[str] | None = None,
    required: Iterable[str] = ("exp", "iat"),
    leeway: int = LEEWAY,
    max_lifetime: int | None = None,
    cache: VerifiedTokens | None = None,
) -> dict[str, Any]:
    """Verify signature, alg, ``typ``, ``iss``, ``aud``, ``exp``/``nbf``/``iat``; return claims.

    ``typ`` compares case-insensitively and ignores an ``application/`` prefix (RFC 9068 §4).
    ``resolve_key(kid)`` returns the public key or raises :class:`JwtValidationError`.
    ``max_lifetime`` (seconds) bounds both ``exp - iat`` and how far ``exp`` lies ahead: a
    credential meant to live minutes is refused when it claims years.
    With ``cache`` (:class:`VerifiedTokens`), a token that passed these same checks before
    against the same key object is answered from it while unexpired; anything else is
    verified in full, so every refusal is the one a first presentation gets.
    Every failure is a :class:`JwtValidationError` whose reason can be shown to the client.
    """
    if cache is not None:
        required = tuple(required)
        params: tuple[Any, ...] = (_typ_set(typ), _as_tuple(issuer), _as_tuple(audience))
        params += (required, leeway, max_lifetime)
        known = cache.lookup(_check_length(token), params, resolve_key, leeway)
        if known is not None:
            return known
        claims, key = _verify_jwt(
            token, resolve_key, typ, issuer, audience, required, leeway, max_lifetime
        )
        cache.store(token, params, key, claims)
        return claims
    return _verify_jwt(token, resolve_key, typ, issuer, audience, required, leeway, max_lifetime)[0]


def _typ_set(typ: str | Iterable[str | None] | None) -> frozenset[str | None] | None:
    if typ is None:
        return None
    return frozenset(_normal_typ(t) for t in ({typ} if isinstance(typ, str) else set(typ)))


def _as_tuple(value: str | Iterable[str] | None) -> str | tuple[str, ...] | None:
    return value if value is None or isinstance(value, str) else tuple(value)


def _verify_jwt(
    token: str,
    resolve_key: KeyResolver,
    typ: str | Iterable[str | None] | None,
    issuer: str | Iterable[str] | None,
    audience: str | Iterable[str] | None,
    required: Iterable[str],
    leeway: int,
    max_lifetime: int | None,
) -> tuple[dict[str, Any], PublicKey]:
    """:func:`verify_jwt`'s full checks; the claims and the key that verified them."""
    header = unverified_header(token)
    check_numeric_dates(unverified_claims(token))
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise JwtValidationError(f"algorithm {alg!r} is not allowed")
    if typ is not None:
        expected = {typ} if isinstance(typ, str) else set(typ)
        if _normal_typ(header.get("typ")) not in {_normal_typ(t) for t in expected}:
            raise JwtValidationError(
                f"token type {header.get('typ')!r} is not accepted here "
                f"(expected {' or '.join(repr(t) for t in sorted(expected, key=str))})"
            )
    key = resolve_key(header.get("kid"))
    if algorithm_for(key) != alg:
        # RFC 8725 §3.1: each key is used with exactly one algorithm.
        raise JwtValidationError(f"algorithm {alg!r} does not match the signing key")
    claims = _decode(token, key, alg, issuer, audience, required, leeway)
    if max_lifetime is not None:
        check_lifetime(claims, max_lifetime, leeway)
    return claims, key


def _decode(
    token: str,
    key: Any,
    alg: str,
    issuer: str | Iterable[str] | None,
    audience: str | Iterable[str] | None,
    required: Iterable[str],
    leeway: int,
) -> dict[str, Any]:
    """pyjwt's verified decode with ``key`` and ``alg`` alone; its errors as JwtValidationError."""
    options = {"require": list(required), "verify_aud": audience is not None}
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=list(audience)
            if audience is not None and not isinstance(audience, str)
            else audience,
            issuer=list(issuer) if issuer is not None and not isinstance(issuer, str) else issuer,
            leeway=leeway,
            options=options,  # type: ignore[arg-type]
        )
    except jwt.ExpiredSignatureError:
        raise JwtValidationError("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise JwtValidationError("token is not yet valid (nbf or iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise JwtValidationError("token audience is not accepted here") from None
    except jwt.InvalidIssuerError:
        raise JwtValidationError("token issuer is not accepted here") from None
    except jwt.MissingRequiredClaimError as exc:
        raise JwtValidationError(f"token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise JwtValidationError("token signature is invalid") from None
    except jwt.PyJWTError as exc:
        raise JwtValidationError(f"token is invalid: {exc}") from None
    except _PARSE_ERRORS:
        raise JwtValidationError("token is malformed") from None
    return claims  # type: ignore[no-any-return]


#: Keycloak signs refresh tokens with the realm's generated HMAC key, not its RSA key.
HMAC_ALGORITHM = "HS512"


def sign_hmac_jwt(claims: Mapping[str, Any], secret: bytes, kid: str, typ: str) -> str:
    """A JWT only its issuer ever checks (Keycloak's refresh tokens), HMAC-signed (HS512)."""
    return jwt.encode(
        dict(claims), secret, algorithm=HMAC_ALGORITHM, headers={"typ": typ, "kid": kid}
    )


def verify_hmac_jwt(
    token: str,
    secret: bytes,
    kid: str,
    *,
    issuer: str,
    required: Iterable[str] = ("exp", "iat"),
    leeway: int = LEEWAY,
) -> dict[str, Any]:
    """:func:`sign_hmac_jwt`'s tokens: HS512 under this ``kid`` and nothing else (an RS256 or
    ES256 token is refused here, and :func:`verify_jwt` never accepts an HMAC one: RFC 8725
    §3.1, one algorithm per key), then the claims as :func:`verify_jwt` checks them."""
    header = unverified_header(token)
    check_numeric_dates(unverified_claims(token))
    if header.get("alg") != HMAC_ALGORITHM:
        raise JwtValidationError(f"algorithm {header.get('alg')!r} is not allowed")
    if header.get("kid") != kid:
        raise JwtValidationError(f"unknown signing key id {header.get('kid')!r}")
    return _decode(token, secret, HMAC_ALGORITHM, issuer, None, required, leeway)


class VerifiedTokens:
    """Tokens that passed :func:`verify_jwt`, for tokens presented again and again: the ID
    token an agent exchanges for one ID-JAG per resource, the user's access token the MCP
    server exchanges on every tool call. A repeat then costs a SHA-256 instead of a parse and
    an asymmetric signature check.

    What a hit still requires, so it answers exactly what a full verification would:

    - the same token, byte for byte (keyed by its SHA-256; any other signature is a miss);
    - the same checks asked for (``typ``, issuer, audience, required claims, leeway, lifetime);
    - the issuer's key set unchanged: the ``kid`` is resolved again and must give the very key
      object that verified it (a JWKS refresh or a ZMS key change builds new objects, so the
      token is verified again; a key no longer known is verified again and refused);
    - still unexpired (``exp`` against the leeway, as pyjwt checks it). ``iat``/``nbf`` were
      in the past when verified and stay so; the lifetime bound only loosens with time.

    Only signature and claim checks are remembered: single-use jtis, policy and everything
    a grant checks after :func:`verify_jwt` run on every request. Bounded (LRU), entries
    dropped once expired. Claims are handed out as copies.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, tuple[Any, Any, PublicKey, dict[str, Any]]]
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def lookup(
        self, token: str, params: Any, resolve_key: KeyResolver, leeway: int
    ) -> dict[str, Any] | None:
        digest = self._digest(token)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            self._entries.move_to_end(digest)
        cached_params, kid, key, claims = entry
        if cached_params != params:
            return None
        if not float(claims["exp"]) > time.time() - leeway:
            self._drop(digest)
            return None  # expired: the full check says so, in its own words
        try:
            current = resolve_key(kid)
        except JwtValidationError:
            current = None
        if current is not key:
            self._drop(digest)
            return None  # the key set changed: verify again against what it holds now
        return _copy_claims(claims)

    def store(self, token: str, params: Any, key: PublicKey, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return  # nothing bounds how long it could be kept: never kept
        # The kid exactly as verified (resolved again on every hit).
        entry = (params, unverified_header(token).get("kid"), key, _copy_claims(claims))
        with self._lock:
            self._entries[self._digest(token)] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def _drop(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def __len__(self) -> int:
        return len(self._entries)


def _copy_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """A copy no caller can change the kept claims through (nested values deep-copied)."""
    return {
        name: copy.deepcopy(value) if isinstance(value, dict | list) else value
        for name, value in claims.items()
    }


def signature_check(token: str, resolve_key: KeyResolver, keys: str) -> dict[str, Any]:
    """Only the signature, against the issuer's keys: what a learner looking at a token asks
    ("was this really issued by that part?"), apart from whether it is still valid.

    The same steps as :func:`verify_jwt` up to the signature (allowed ``alg``, the key named by
    ``kid``, one algorithm per key), then pyjwt's signature check with every claim check off:
    expiry is shown beside it, and an expired token's signature is still worth knowing.
    ``keys`` names the key set for the verdict (e.g. "the PDP's JWKS").
    """
    verdict: dict[str, Any] = {"valid": False, "kid": None, "alg": None, "keys": keys}
    try:
        header = unverified_header(token)
        verdict.update(kid=header.get("kid"), alg=header.get("alg"))
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise JwtValidationError(f"algorithm {header.get('alg')!r} is not allowed")
        key = resolve_key(header.get("kid"))
        if algorithm_for(key) != header.get("alg"):
            raise JwtValidationError(f"algorithm {header.get('alg')!r} does not match the key")
        jwt.decode(
            token,
            key,
            algorithms=[str(header["alg"])],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": [],
            },
        )
    except JwtValidationError as exc:
        verdict["reason"] = exc.reason
        return verdict
    except jwt.InvalidSignatureError:
        verdict["reason"] = "the signature does not match the key"
        return verdict
    except jwt.PyJWTError as exc:
        verdict["reason"] = f"token is invalid: {exc}"
        return verdict
    except _PARSE_ERRORS:
        verdict["reason"] = "token is malformed"
        return verdict
    verdict["valid"] = True
    return verdict


def check_lifetime(claims: Mapping[str, Any], max_lifetime: int, leeway: int = LEEWAY) -> None:
    """Refuse a token whose ``exp`` is more than ``max_lifetime`` after ``iat`` or after now."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JwtValidationError("token has no numeric exp")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and not isinstance(iat, bool) and exp - iat > max_lifetime:
        raise JwtValidationError(f"token lifetime exp - iat exceeds {max_lifetime} seconds")
    if exp - time.time() > max_lifetime + leeway:
        raise JwtValidationError(f"token expires more than {max_lifetime} seconds from now")


def _normal_typ(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    return text.removeprefix("application/")


def static_key_resolver(keys: Mapping[str, PublicKey]) -> KeyResolver:
    def resolve(kid: str | None) -> PublicKey:
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid is None or kid not in keys:
            raise JwtValidationError(f"unknown signing key id {kid!r}")
        return keys[kid]

    return resolve


class JwksCache:
    """A JWKS fetched over HTTP, cached, refetched when a token names an unknown ``kid``.

    Refetches are rate-limited (``min_refresh_s``) so a flood of random kids cannot turn the
    verifier into a request amplifier. Thread-safe; used by resource servers and the PDP.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        max_age_s: float = 300.0,
        min_refresh_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self._client = client
        self._timeout = timeout_s
        self._max_age = max_age_s
        self._min_refresh = min_refresh_s
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def held(self, kid: str | None) -> PublicKey | None:
        """The key :meth:`resolve` answers for ``kid`` without fetching, or None whenever it
        could fetch first: keys past ``max_age``, a ``kid`` not held, or no ``kid`` at all
        (:meth:`resolve` refetches before picking a lone key). The one freshness rule."""
        if kid is None or time.monotonic() - self._fetched_at > self._max_age:
            return None
        return self._keys.get(kid)

    def resolve(self, kid: str | None) -> PublicKey:
        """The key for ``kid``, fetching the JWKS when the keys are past their age or ``kid``
        is not held (rate-limited). Inside :func:`lab.nonblocking.forbidden` a fetch is
        :class:`~lab.nonblocking.WouldBlock` instead (the caller retries in a worker thread):
        the embedded runtime's event loop serves the JWKS it would fetch."""
        held = self.held(kid)
        if held is not None:
            return held
        keys = self._keys
        stale = time.monotonic() - self._fetched_at > self._max_age
        if stale or (kid not in keys and self._may_refresh()):
            # The fetch (or the wait for one under way) is prepared on threads of the caller's
            # choosing before the work runs again in a worker (lab.pdp.zts.dispatcher).
            nonblocking.check(f"a fetch of {self.url}", prepare=lambda: self._refresh_once(kid))
            keys = self._refresh_once(kid)
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid is None or kid not in keys:
            raise JwtValidationError(f"unknown signing key id {kid!r}")
        return keys[kid]

    __call__ = resolve

    def _may_refresh(self) -> bool:
        return time.monotonic() - self._fetched_at >= self._min_refresh

    def _refresh_once(self, kid: str | None = None) -> dict[str, PublicKey]:
        """Single-flight refresh; no lock is held while waiting for the network by anyone
        else: callers arriving during a refresh use the keys already known when those hold
        their ``kid``; a caller whose key is not known yet (no keys at all, or a key the issuer
        just rotated in) waits, bounded by the timeout, for that fetch to finish. Answering it
        from the old keys refused a valid token (seen under load after a rotation)."""
        deadline = time.monotonic() + self._timeout
        while not self._lock.acquire(blocking=False):
            known = self._keys
            if (known and (kid is None or kid in known)) or time.monotonic() > deadline:
                return known
            time.sleep(0.01)
        try:
            if time.monotonic() - self._fetched_at < self._min_refresh:
                # Another caller just refreshed - or tried and failed: with no keys held, a
                # waiter that found the lock free fetched again (another whole timeout).
                return self._keys
            self._refresh()
            return self._keys
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        # httpx is imported here, not at the top: signing (lab reset's admin assertions) needs
        # this module but no HTTP client, and httpx's import is most of such a command's start.
        import httpx

        from lab.oauth import http as lab_http

        try:
            if self._client is not None:
                response = self._client.get(self.url, timeout=self._timeout)
            else:
                response = lab_http.get(self.url, timeout=self._timeout)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            self._fetched_at = time.monotonic()
            if self._keys:
                return  # keep serving the keys we have; the next refresh may succeed
            raise JwtValidationError(
                f"signing keys could not be fetched from {self.url}: {exc}"
            ) from None
        keys: dict[str, PublicKey] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry.get("kid"))] = public_key_from_jwk(entry)
            except Exception:  # noqa: BLE001 - a malformed entry is skipped, never fatal
                continue
        self._keys = keys
        self._fetched_at = time.monotonic()


def make_client_assertion(
    client_id: str,
    signing_key: SigningKey,
    audience: str,
    *,
    lifetime_s: int = 60,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """RFC 7523 §2.2 ``private_key_jwt``: iss = sub = client_id, aud = the AS, single-use jti."""
    issued = now()
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": new_jti(),
        "iat": issued,
        "exp": issued + lifetime_s,
    }
    if extra:
        claims.update(extra)
    return signing_key.sign(claims, typ=TYP_JWT_HEADER)


TYP_JWT_HEADER = "JWT"
