"""Every step against real Keycloak (``lab verify``), and the lab's lifecycle around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.backends import keycloak_process as kc
from lab.backends import versions
from tests.keycloak.conftest import KeycloakLab, runtime_record

pytestmark = pytest.mark.slow


def test_lab_status_names_real_keycloak_serving_the_idp_port(keycloak_lab: KeycloakLab) -> None:
    result = keycloak_lab.stack.lab("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["healthy"] is True
    assert f"Keycloak {versions.KEYCLOAK_VERSION}" in status["detail"]
    record = runtime_record(keycloak_lab.stack.home)
    assert record["idp"] == "keycloak"
    assert kc.is_keycloak_process(record["keycloak"]["pid"], Path(record["keycloak"]["home"]))


def test_every_step_passes_against_real_keycloak_or_is_skipped_for_a_missing_feature(
    keycloak_lab: KeycloakLab,
) -> None:
    result = keycloak_lab.stack.lab("verify", "--json", "-", timeout=600)
    records = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert {r["served_by"]["idp"] for r in records} == {f"Keycloak {versions.KEYCLOAK_VERSION}"}
    by_status: dict[str, list[int]] = {}
    for record in records:
        by_status.setdefault(record["status"], []).append(record["number"])
    assert set(by_status) <= {"passed", "skipped"}, by_status
    assert set(range(1, 18)) <= set(by_status["passed"])  # tutorial path: nothing may skip
    for record in records:
        if record["status"] == "skipped":
            # Only a step that declares it needs an IdP-issued ID-JAG may skip, and it says why.
            assert "does not issue ID-JAGs" in record["message"]
            assert "Keycloak 26." in record["message"]


def test_lab_logs_idp_shows_keycloaks_own_log(keycloak_lab: KeycloakLab) -> None:
    result = keycloak_lab.stack.lab("logs", "idp", "--lines", "400")
    assert result.returncode == 0
    assert f"Keycloak {versions.KEYCLOAK_VERSION}" in result.stdout
