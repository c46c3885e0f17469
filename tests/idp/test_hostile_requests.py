"""The lab IdP answers each hostile request of ``tests/idp/hostile_requests.py`` as recorded
there - Keycloak 26's answer, or the documented deliberate difference. The same cases run beside
real Keycloak in ``tests/keycloak/test_hostile_requests_against_keycloak.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.idp.hostile_requests import CASES, Case, Issuer, lab_idp


@pytest.fixture(scope="module")
def lab_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with lab_idp(tmp_path_factory.mktemp("lab-idp")) as issuer:
        yield issuer


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_lab_idp_answers_a_hostile_request_as_keycloak_does(
    lab_issuer: Issuer, case: Case
) -> None:
    assert case.send(lab_issuer) == case.lab_answer
