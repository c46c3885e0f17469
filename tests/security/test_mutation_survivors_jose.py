"""Tests written for mutants of ``lab/oauth/jose.py`` that ``make mutate`` found alive
(docs/dev/mutation.md): the JWKS cache's refresh rules (which keys it takes, when it refetches,
how long it waits, what it keeps when the IdP fails) and the exact refusals of key loading.

The cache is driven through an ``httpx.MockTransport`` and, where a rule is about time, a
controlled ``time.monotonic``, so each rule is asserted exactly rather than by waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import lab.oauth.http as lab_http
import lab.oauth.jose as jose
from lab.oauth.jose import JwksCache, JwtValidationError, generate_private_key, public_jwk

URL = "http://idp.test/certs"


class Idp:
    """A JWKS endpoint whose document the test changes; counts and records the fetches."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.fetches: list[httpx.Request] = []
        self.fail = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches.append(request)
        if self.fail:
            return httpx.Response(503, json={"error": "down"})
        return httpx.Response(200, json=self.document)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))


class Clock:
    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(jose.time, "monotonic", fake)
    yield fake


def key_entry(kid: str, **extra: Any) -> dict[str, Any]:
    entry = public_jwk(generate_private_key(), kid)
    entry.update(extra)
    return entry


# -------------------------------------------------------------------- which keys it takes


def test_keys_for_encryption_are_never_used_to_verify() -> None:
    idp = Idp({"keys": [key_entry("enc-key", use="enc"), key_entry("sig-key")]})
    cache = JwksCache(URL, client=idp.client())
    assert cache.resolve("sig-key") is not None
    with pytest.raises(JwtValidationError, match="unknown signing key id 'enc-key'"):
        cache.resolve("enc-key")


def test_a_key_without_use_is_a_signing_key() -> None:
    entry = key_entry("plain")
    del entry["use"]
    cache = JwksCache(URL, client=Idp({"keys": [entry]}).client())
    assert cache.resolve("plain") is not None


@pytest.mark.parametrize(
    "document", [[], {}, {"keys": ["junk", 7]}, "text"], ids=["list", "no-keys", "junk", "str"]
)
def test_a_malformed_jwks_document_gives_no_keys_not_a_crash(document: Any) -> None:
    cache = JwksCache(URL, client=Idp(document).client())
    with pytest.raises(JwtValidationError, match="unknown signing key id 'k1'"):
        cache.resolve("k1")


def test_junk_entries_are_skipped_and_the_good_key_kept() -> None:
    idp = Idp({"keys": ["junk", {"kty": "EC", "kid": "broken"}, key_entry("good")]})
    assert JwksCache(URL, client=idp.client()).resolve("good") is not None


# -------------------------------------------------------------------- how it fetches


def test_the_given_client_fetches_the_url_with_the_timeout() -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    JwksCache(URL, client=idp.client(), timeout_s=2.5).resolve("k1")
    (request,) = idp.fetches
    assert str(request.url) == URL
    assert request.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}


def test_the_default_timeout_is_five_seconds() -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    JwksCache(URL, client=idp.client()).resolve("k1")
    assert idp.fetches[0].extensions["timeout"]["read"] == 5.0


def test_without_a_client_the_shared_http_helper_gets_the_url_and_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    document = {"keys": [key_entry("k1")]}

    def fake_get(url: str, **options: Any) -> httpx.Response:
        calls.append((url, options))
        return httpx.Response(200, json=document, request=httpx.Request("GET", url))

    monkeypatch.setattr(lab_http, "get", fake_get)
    JwksCache(URL, timeout_s=1.5).resolve("k1")
    assert calls == [(URL, {"timeout": 1.5})]


def test_an_unreachable_idp_is_named_in_the_refusal() -> None:
    idp = Idp({})
    idp.fail = True
    with pytest.raises(JwtValidationError) as refused:
        JwksCache(URL, client=idp.client()).resolve("k1")
    assert refused.value.reason.startswith(f"signing keys could not be fetched from {URL}: ")


# -------------------------------------------------------------------- when it refetches


def test_an_unknown_kid_refetches_after_min_refresh_and_not_before(clock: Clock) -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    cache = JwksCache(URL, client=idp.client())
    cache.resolve("k1")
    fetched = clock.now
    idp.document = {"keys": [key_entry("k1"), key_entry("k2")]}
    clock.now = fetched + 0.99
    with pytest.raises(JwtValidationError):
        cache.resolve("k2")  # within min_refresh_s (1 s by default): no refetch
    assert len(idp.fetches) == 1
    clock.now = fetched + 1.0  # exactly 1 s after the fetch: a rotated key is picked up
    assert cache.resolve("k2") is not None
    assert len(idp.fetches) == 2


def test_keys_are_refetched_once_older_than_max_age(clock: Clock) -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    cache = JwksCache(URL, client=idp.client())
    cache.resolve("k1")
    clock.now += 300.0
    cache.resolve("k1")
    assert len(idp.fetches) == 1  # not older than 300 s yet
    clock.now += 0.5
    cache.resolve("k1")
    assert len(idp.fetches) == 2


def test_a_caller_right_after_another_refresh_does_not_refetch(clock: Clock) -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    cache = JwksCache(URL, client=idp.client())
    cache.resolve("k1")
    clock.now += 0.5
    cache._refresh_once()  # e.g. a second thread that queued behind the first refresh
    assert len(idp.fetches) == 1


def test_a_failed_refresh_keeps_the_known_keys_and_waits_min_refresh(clock: Clock) -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    cache = JwksCache(URL, client=idp.client())
    cache.resolve("k1")
    idp.fail = True
    clock.now += 301
    assert cache.resolve("k1") is not None  # stale, the refresh failed, the known key serves
    assert len(idp.fetches) == 2
    clock.now += 0.5
    with pytest.raises(JwtValidationError):
        cache.resolve("k-new")
    assert len(idp.fetches) == 2  # the failed fetch counts as a fetch for the rate limit


# -------------------------------------------------------------------- single flight


def test_known_keys_are_served_at_once_while_another_refresh_runs(clock: Clock) -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    cache = JwksCache(URL, client=idp.client())
    cache.resolve("k1")
    clock.now += 301  # stale: this caller would refresh, but another one is refreshing
    assert cache._lock.acquire(blocking=False)
    try:
        result: list[Any] = []
        reader = threading.Thread(target=lambda: result.append(cache.resolve("k1")))
        reader.start()
        reader.join(timeout=3)
        assert not reader.is_alive() and result and result[0] is not None
    finally:
        cache._lock.release()
    assert len(idp.fetches) == 1


def test_without_keys_a_caller_waits_for_the_running_refresh_up_to_the_timeout() -> None:
    idp = Idp({"keys": [key_entry("k1")]})
    cache = JwksCache(URL, client=idp.client(), timeout_s=0.3)
    assert cache._lock.acquire(blocking=False)  # another caller's first fetch is running
    outcome: list[BaseException | None] = []

    def reader() -> None:
        try:
            cache.resolve("k1")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=reader)
    thread.start()
    thread.join(timeout=3)
    elapsed = time.monotonic() - started
    cache._lock.release()
    assert not thread.is_alive(), "the reader waited past its timeout"
    assert isinstance(outcome[0], JwtValidationError), outcome
    assert 0.25 <= elapsed < 0.9
    assert idp.fetches == []  # the waiting reader never fetched on its own
    cache.resolve("k1")
    assert len(idp.fetches) == 1  # and the lock is free again afterwards


# -------------------------------------------------------------------- key loading refusals


def test_a_public_key_pem_may_be_given_as_text() -> None:
    key = generate_private_key()
    pem = jose.public_pem(key).decode()
    loaded = jose.load_public_key(pem)
    assert loaded.public_numbers() == key.public_key().public_numbers()


def test_an_unsupported_public_key_is_refused_by_name() -> None:
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError) as refused:
        jose.load_public_key(pem)
    assert str(refused.value) == "only RSA and P-256 EC public keys are supported"


def test_a_private_jwk_in_a_jwks_is_refused_by_name() -> None:
    private = generate_private_key()
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    entry = public_jwk(private, "k1")
    entry["d"] = jose.b64url(private.private_numbers().private_value.to_bytes(32, "big"))
    with pytest.raises(JwtValidationError) as refused:
        jose.public_key_from_jwk(entry)
    assert refused.value.reason == "the JWKS entry is not a public key"


# -------------------------------------------------------------------- small helpers


def test_a_private_key_file_is_created_owner_only_from_its_first_byte(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_open = jose.os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777) -> int:
        modes.append(mode)
        return real_open(path, flags, mode)

    monkeypatch.setattr(jose.os, "open", recording_open)
    target = tmp_path / "not" / "yet" / "there" / "key.pem"  # parents are created
    jose.write_private_key(target, generate_private_key())
    assert modes == [0o600]  # never wider, not even before the chmod
    assert target.stat().st_mode & 0o777 == 0o600


def test_ybase64_refuses_characters_outside_its_alphabet() -> None:
    assert jose.ybase64_decode(jose.ybase64_encode(b"\xfb\xff")) == b"\xfb\xff"
    assert jose.ybase64_decode("YWJj") == b"abc"
    with pytest.raises(ValueError):
        jose.ybase64_decode("YW!Jj")  # would decode to b"abc" if the "!" were dropped


def test_a_new_secret_carries_24_random_bytes() -> None:
    secret = jose.new_secret()
    assert len(secret) == 32  # 24 bytes, base64url without padding
    assert len({jose.new_secret() for _ in range(5)}) == 5


def test_a_static_resolver_takes_a_missing_kid_only_when_one_key_exists() -> None:
    one, two = generate_private_key().public_key(), generate_private_key().public_key()
    assert jose.static_key_resolver({"a": one})(None) is one
    both = jose.static_key_resolver({"a": one, "b": two})
    with pytest.raises(JwtValidationError, match="unknown signing key id None"):
        both(None)
    assert both("b") is two
    with pytest.raises(JwtValidationError, match="unknown signing key id 'c'"):
        both("c")


def test_keys_are_p256_by_default_rsa_2048_on_request_and_nothing_else() -> None:
    default = generate_private_key()
    assert isinstance(default, ec.EllipticCurvePrivateKey) and default.curve.name == "secp256r1"
    assert generate_private_key("RS256").key_size == 2048
    with pytest.raises(ValueError) as refused:
        generate_private_key("HS256")
    assert str(refused.value) == "unsupported algorithm 'HS256'; use one of ('RS256', 'ES256')"


def test_public_pem_takes_a_public_key_as_well() -> None:
    public = generate_private_key().public_key()
    assert jose.load_public_key(jose.public_pem(public)).public_numbers() == public.public_numbers()


def test_a_token_fingerprint_is_twelve_hex_characters_of_its_sha256() -> None:
    import hashlib

    assert jose.token_fingerprint("a.b.c") == hashlib.sha256(b"a.b.c").hexdigest()[:12]


def test_base64url_strips_only_the_padding() -> None:
    assert jose.b64url(b"\x00\x00\x17") == "AAAX"  # a trailing X is data, not padding
    assert jose.b64url(b"\x00") == "AA"


def test_an_unreadable_private_key_file_is_named() -> None:
    import tempfile
    from pathlib import Path

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.pem"
        path.write_bytes(pem)
        with pytest.raises(ValueError) as refused:
            jose.load_private_key(path)
    assert str(refused.value) == f"{path}: only RSA and P-256 EC keys are supported"


# -------------------------------------------------------------------- reading tokens


@pytest.mark.parametrize("read", [jose.unverified_header, jose.unverified_claims])
def test_token_length_bounds_are_exact(read: Any) -> None:
    for refused in ("", "a" * (jose.MAX_TOKEN_LENGTH + 1), None, b"a.b.c"):
        with pytest.raises(JwtValidationError) as error:
            read(refused)
        assert error.value.reason == "token is empty or too large"
    with pytest.raises(JwtValidationError) as error:
        read("a" * jose.MAX_TOKEN_LENGTH)  # at the bound: read, then refused as malformed
    assert error.value.reason == "malformed token: Not enough segments"


def test_unverified_claims_names_what_is_malformed() -> None:
    with pytest.raises(JwtValidationError) as error:
        jose.unverified_claims("a.b")
    assert error.value.reason == "malformed token: Not enough segments"


@pytest.mark.parametrize(
    "value",
    [True, False, "1700000000", None, float("nan"), float("inf"), -1, 2**53, [1]],
    ids=repr,
)
@pytest.mark.parametrize("name", ["exp", "iat", "nbf", "auth_time"])
def test_a_time_claim_that_is_no_numeric_date_is_refused(name: str, value: Any) -> None:
    with pytest.raises(JwtValidationError) as error:
        jose.check_numeric_dates({name: value})
    assert error.value.reason == f"{name} must be a NumericDate (seconds since the epoch)"


@pytest.mark.parametrize("value", [0, 0.5, 1_700_000_000, 2**53 - 1])
def test_numeric_dates_from_zero_to_below_2_to_the_53_are_accepted(value: Any) -> None:
    jose.check_numeric_dates({"exp": value, "iat": value, "nbf": value, "auth_time": value})


def test_a_bad_later_time_claim_is_refused_when_earlier_ones_are_absent() -> None:
    with pytest.raises(JwtValidationError, match="^nbf must be a NumericDate"):
        jose.check_numeric_dates({"nbf": "soon"})


# -------------------------------------------------------------------- lifetimes


NOW = 1_800_000_000.0


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jose.time, "time", lambda: NOW)


@pytest.mark.parametrize("claims", [{}, {"exp": True}, {"exp": "1800000000"}], ids=repr)
def test_a_lifetime_check_needs_a_numeric_exp(claims: dict[str, Any]) -> None:
    with pytest.raises(JwtValidationError) as error:
        jose.check_lifetime(claims, 60)
    assert error.value.reason == "token has no numeric exp"


def test_exp_minus_iat_beyond_the_bound_is_refused_at_the_bound_accepted(wall: None) -> None:
    jose.check_lifetime({"iat": NOW - 100, "exp": NOW - 40}, 60)  # exactly 60 s
    with pytest.raises(JwtValidationError) as error:
        jose.check_lifetime({"iat": NOW - 100, "exp": NOW - 39}, 60)
    assert error.value.reason == "token lifetime exp - iat exceeds 60 seconds"
    jose.check_lifetime({"iat": True, "exp": NOW - 39}, 60)  # a boolean iat is no iat


def test_exp_further_ahead_than_the_bound_plus_leeway_is_refused(wall: None) -> None:
    jose.check_lifetime({"exp": NOW + 60 + 30}, 60, leeway=30)  # exactly at the bound
    with pytest.raises(JwtValidationError) as error:
        jose.check_lifetime({"exp": NOW + 60 + 31}, 60, leeway=30)
    assert error.value.reason == "token expires more than 60 seconds from now"


# -------------------------------------------------------------------- key lookup, assertions


def test_a_jwks_with_one_key_never_lends_it_to_another_kid() -> None:
    only = key_entry("k1")
    cache = JwksCache(URL, client=Idp({"keys": [only]}).client())
    assert cache.resolve(None) is cache.resolve("k1")  # no kid and a single key: that key
    with pytest.raises(JwtValidationError, match="unknown signing key id 'k2'"):
        cache.resolve("k2")
    two = JwksCache(URL, client=Idp({"keys": [only, key_entry("k2")]}).client())
    with pytest.raises(JwtValidationError, match="unknown signing key id None"):
        two.resolve(None)


def test_a_client_assertion_lives_60_s_carries_extra_claims_and_typ_jwt() -> None:
    key = jose.SigningKey(generate_private_key(), "kid-1")
    token = jose.make_client_assertion("ai.agent", key, "https://zts", extra={"foo": "bar"})
    claims, header = jose.unverified_claims(token), jose.unverified_header(token)
    assert claims["exp"] - claims["iat"] == 60
    assert (claims["iss"], claims["sub"], claims["aud"], claims["foo"]) == (
        "ai.agent",
        "ai.agent",
        "https://zts",
        "bar",
    )
    assert header["typ"] == "JWT" and header["kid"] == "kid-1"


def test_a_refused_typ_is_named_with_the_types_accepted() -> None:
    key = jose.SigningKey(generate_private_key(), "kid-1")
    token = key.sign({"exp": jose.now() + 60, "iat": jose.now()}, typ="foo")
    resolver = jose.static_key_resolver({"kid-1": key.key.public_key()})
    with pytest.raises(JwtValidationError) as error:
        jose.verify_jwt(token, resolver, typ=["at+jwt", "JWT"])
    assert (
        error.value.reason == "token type 'foo' is not accepted here (expected 'JWT' or 'at+jwt')"
    )


# -------------------------------------------------------------------- verify_jwt's refusals


@pytest.fixture
def signer() -> jose.SigningKey:
    return jose.SigningKey(generate_private_key(), "kid-1")


def _verify(signer: jose.SigningKey, token: str, **options: Any) -> dict[str, Any]:
    resolver = jose.static_key_resolver({"kid-1": signer.key.public_key()})
    return jose.verify_jwt(token, resolver, **options)


def _reason(signer: jose.SigningKey, token: str, **options: Any) -> str:
    with pytest.raises(JwtValidationError) as error:
        _verify(signer, token, **options)
    return error.value.reason


def test_verify_jwt_names_each_refusal_exactly(signer: jose.SigningKey) -> None:
    t = jose.now()
    sign = signer.sign
    assert _reason(signer, sign({"exp": t - 60, "iat": t - 120})) == "token has expired"
    assert (
        _reason(signer, sign({"exp": t + 600, "iat": t, "nbf": t + 300}))
        == "token is not yet valid (nbf or iat in the future)"
    )
    ok = {"exp": t + 60, "iat": t, "aud": "a", "iss": "i"}
    assert _reason(signer, sign(ok), audience="b") == "token audience is not accepted here"
    assert _reason(signer, sign(ok), issuer=["j", "k"]) == "token issuer is not accepted here"
    assert _verify(signer, sign(ok), issuer=["j", "i"], audience=["b", "a"])["iss"] == "i"
    other = jose.SigningKey(generate_private_key(), "kid-1").sign(ok)
    assert _reason(signer, other) == "token signature is invalid"
    numeric_sub = sign({**ok, "sub": 7})
    assert _reason(signer, numeric_sub) == "token is invalid: Subject must be a string"


def test_a_key_of_another_algorithm_is_refused_by_name(signer: jose.SigningKey) -> None:
    t = jose.now()
    token = signer.sign({"exp": t + 60, "iat": t})  # ES256
    rsa_key = generate_private_key("RS256").public_key()
    with pytest.raises(JwtValidationError) as error:
        jose.verify_jwt(token, jose.static_key_resolver({"kid-1": rsa_key}))
    assert error.value.reason == "algorithm 'ES256' does not match the signing key"


def test_the_leeway_given_applies_to_expiry_and_to_the_lifetime_bound(
    signer: jose.SigningKey,
) -> None:
    t = jose.now()
    recently_expired = signer.sign({"exp": t - 10, "iat": t - 70})
    assert _verify(signer, recently_expired)["exp"] == t - 10  # default leeway 30 s
    assert _reason(signer, recently_expired, leeway=0) == "token has expired"
    far = signer.sign({"exp": t + 80})  # no iat: only "how far ahead" bounds it
    assert _verify(signer, far, required=["exp"], max_lifetime=60, leeway=45)["exp"] == t + 80
    assert (
        _reason(signer, far, required=["exp"], max_lifetime=60, leeway=5)
        == "token expires more than 60 seconds from now"
    )


def test_unreadable_claims_under_a_readable_header_are_named_by_pyjwts_reason() -> None:
    header = jose.b64url(b'{"alg":"ES256","typ":"JWT"}')
    token = f"{header}.{jose.b64url(b'[1]')}.c2ln"
    assert jose.unverified_header(token) == {"alg": "ES256", "typ": "JWT"}
    with pytest.raises(JwtValidationError) as error:
        jose.unverified_claims(token)
    assert error.value.reason == "malformed token: Invalid payload string: must be a json object"
