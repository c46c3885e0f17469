"""Signed policy data: round trip, tampering, wrong key, expiry, roles_of with wildcards."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.oauth.jose import SigningKey, static_key_resolver
from lab.policy.signed import PolicyDataError, sign_policy_data, verify_signed_policy_data


def _document(key: SigningKey, expires_in: float = 3600) -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + expires_in))
    signed = {
        "policyData": {
            "domain": "api",
            "policies": [
                {
                    "name": "api:policy.p",
                    "modified": "x",
                    "assertions": [
                        {
                            "role": "api:role.docs-getter",
                            "resource": "api:docs",
                            "action": "get",
                            "effect": "ALLOW",
                            "id": 1,
                        }
                    ],
                }
            ],
            "roles": [
                {"name": "api:role.docs-getter", "members": ["human.idjag-learner"]},
                {"name": "api:role.agents", "members": ["ai.*"]},
            ],
        },
        "zmsSignature": "",
        "zmsKeyId": "",
        "modified": "x",
        "expires": stamp,
    }
    return sign_policy_data(signed, key)


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "k.pem")


def test_round_trip_gives_assertions_and_roles(key: SigningKey) -> None:
    policy = verify_signed_policy_data(
        _document(key), static_key_resolver({key.kid: key.key.public_key()})
    )
    assert policy.domain == "api"
    assert [a.action for a in policy.assertions] == ["get"]
    assert policy.roles_of("human.idjag-learner") == {"api:role.docs-getter"}
    assert policy.roles_of("ai.agent") == {"api:role.agents"}


def test_tampered_document_is_refused(key: SigningKey) -> None:
    document = _document(key)
    document["signedPolicyData"]["policyData"]["roles"][0]["members"].append("human.mallory")
    with pytest.raises(PolicyDataError, match="does not cover"):
        verify_signed_policy_data(document, static_key_resolver({key.kid: key.key.public_key()}))


def test_other_key_is_refused(key: SigningKey, tmp_path: Path) -> None:
    other = SigningKey.load_or_create(tmp_path / "other.pem")
    with pytest.raises(PolicyDataError):
        verify_signed_policy_data(
            _document(key), static_key_resolver({key.kid: other.key.public_key()})
        )


def test_expired_document_is_refused(key: SigningKey) -> None:
    with pytest.raises(PolicyDataError, match="expired"):
        verify_signed_policy_data(
            _document(key, expires_in=-60), static_key_resolver({key.kid: key.key.public_key()})
        )
