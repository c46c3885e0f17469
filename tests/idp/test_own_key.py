"""The IdP skips RSA key re-validation only for the key the lab wrote itself (issue #21: the
check costs 25–90 ms of every ``lab up``); any other key file takes the validating load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from lab.config import Settings
from lab.idp import own_key
from lab.idp.app import SIGNING_KEY_NAME, signing_key
from lab.oauth.jose import generate_private_key, public_pem, write_private_key


@pytest.fixture
def skipped(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records each private-key load's ``unsafe_skip_rsa_key_validation``."""
    calls: list[bool] = []
    real = serialization.load_pem_private_key

    def spy(data: bytes, password: Any = None, **options: Any) -> Any:
        calls.append(bool(options.get("unsafe_skip_rsa_key_validation")))
        return real(data, password, **options)

    monkeypatch.setattr(serialization, "load_pem_private_key", spy)
    return calls


def written(tmp_path: Path, alg: str = "RS256") -> Path:
    path = tmp_path / "idp-signing.pem"
    write_private_key(path, generate_private_key(alg))
    return path


def test_the_key_the_lab_wrote_loads_without_revalidation(
    tmp_path: Path, skipped: list[bool]
) -> None:
    path = written(tmp_path)
    key = own_key.load_own_rsa_key(path)
    assert key is not None
    assert key.public_key().public_numbers() == (
        serialization.load_pem_public_key(
            path.with_suffix(".pub.pem").read_bytes()
        ).public_numbers()  # type: ignore[union-attr]
    )
    assert skipped == [True]


def test_a_key_file_readable_by_others_is_not_trusted(tmp_path: Path) -> None:
    path = written(tmp_path)
    path.chmod(0o640)
    assert own_key.load_own_rsa_key(path) is None


def test_a_key_without_its_public_half_beside_it_is_not_trusted(tmp_path: Path) -> None:
    path = written(tmp_path)
    path.with_suffix(".pub.pem").unlink()
    assert own_key.load_own_rsa_key(path) is None


def test_a_key_swapped_in_without_its_public_half_is_not_trusted(tmp_path: Path) -> None:
    path = written(tmp_path)
    path.with_suffix(".pub.pem").write_bytes(public_pem(generate_private_key("RS256")))
    assert own_key.load_own_rsa_key(path) is None


def test_an_ec_key_is_left_to_the_normal_load(tmp_path: Path) -> None:
    assert own_key.load_own_rsa_key(written(tmp_path, "ES256")) is None


def test_a_missing_or_unreadable_file_is_left_to_the_normal_load(tmp_path: Path) -> None:
    assert own_key.load_own_rsa_key(tmp_path / "absent.pem") is None
    path = written(tmp_path)
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    assert own_key.load_own_rsa_key(path) is None


def test_the_idp_validates_a_key_it_cannot_trust_and_reuses_its_own(
    lab_settings: Settings, skipped: list[bool]
) -> None:
    first = signing_key(lab_settings)  # created: generated, nothing loaded
    assert skipped == []
    assert signing_key(lab_settings).kid == first.kid  # its own file: no re-validation
    assert skipped == [True]
    lab_settings.key_file(SIGNING_KEY_NAME).chmod(0o644)
    assert signing_key(lab_settings).kid == first.kid
    assert skipped[-1] is False  # the validating load
