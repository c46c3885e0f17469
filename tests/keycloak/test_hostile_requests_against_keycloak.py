"""The same hostile requests to real Keycloak and to the lab IdP, answers compared by class.

The lab IdP's rules for a repeated parameter (``lab.oauth.starlette.Repeats``) and for the
``scope`` parameter's syntax (``lab.oauth.scopes``) are taken from Keycloak 26; this fails when
either side stops giving the answer recorded in ``tests/idp/hostile_requests.py`` - so a
Keycloak upgrade that changes a rule, or a lab change that leaves it, shows here. Runs on this
module's one Keycloak (the session's ``keycloak_lab``) and one in-process lab IdP.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.agent.signin import IdpClient
from tests.idp.hostile_requests import CASES, Case, Issuer, lab_idp
from tests.keycloak.conftest import KeycloakLab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def issuers(
    keycloak_lab: KeycloakLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Issuer, Issuer]]:
    keycloak = Issuer(keycloak_lab.endpoints.idp_issuer, IdpClient.from_realm_file().client_secret)
    with lab_idp(tmp_path_factory.mktemp("lab-idp")) as lab:
        yield keycloak, lab


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_keycloak_and_the_lab_idp_answer_a_hostile_request_alike(
    issuers: tuple[Issuer, Issuer], case: Case
) -> None:
    keycloak, lab = issuers
    answers = {"keycloak": case.send(keycloak), "lab": case.send(lab)}
    assert answers["keycloak"] in case.keycloak_answers, answers
    assert answers["lab"] == case.lab_answer, answers
    if case.lab is None:  # no recorded difference: the two answers are one class
        assert answers["keycloak"] == answers["lab"]
