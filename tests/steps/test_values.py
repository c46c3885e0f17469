"""${name} substitution: endpoints, keys, realm secret, captures (typed), and precise misses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.config import Settings
from lab.oauth.jose import SigningKey
from lab.steps.values import (
    MissingValue,
    Scope,
    fill_body,
    realm_client_secret,
    references,
    substitute,
)


def scope_for(settings: Settings, captures: dict | None = None) -> Scope:
    return Scope(settings.endpoints, settings, captures or {}, set())


def test_endpoints_are_substituted_inside_strings(lab_settings: Settings) -> None:
    value = substitute(
        {"url": "${endpoints.zts_token}", "list": ["{{ endpoints.mcp }}/x"]},
        scope_for(lab_settings),
    )
    assert value == {
        "url": lab_settings.endpoints.zts_token,
        "list": [f"{lab_settings.endpoints.mcp}/x"],
    }


def test_a_whole_string_reference_keeps_the_captured_type(lab_settings: Settings) -> None:
    scope = scope_for(lab_settings, {"flag": True, "count": 2, "doc": {"id": 7}})
    assert substitute("${flag}", scope) is True
    assert substitute("${count}", scope) == 2
    assert substitute("n=${count}", scope) == "n=2"
    assert substitute("${doc.id}", scope) == 7


def test_key_values_come_from_the_lab_key(lab_settings: Settings) -> None:
    key = SigningKey.load_or_create(lab_settings.key_file("human.idjag-learner"))
    assert substitute("${keys.human.idjag-learner.kid}", scope_for(lab_settings)) == key.kid
    assert substitute(
        "${keys.human.idjag-learner.public_ybase64}", scope_for(lab_settings)
    ).endswith("-")


def test_realm_secret_is_read_from_the_realm_file_and_marked_secret(
    tmp_path: Path, lab_settings: Settings
) -> None:
    realm = tmp_path / "realm.json"
    realm.write_text(
        json.dumps({"clients": [{"clientId": "ai.agent", "secret": "realm-secret-1"}]}),
        encoding="utf-8",
    )
    assert realm_client_secret(realm) == "realm-secret-1"
    with pytest.raises(MissingValue):
        realm_client_secret(tmp_path / "absent.json")


def test_missing_name_names_the_place_and_the_variable(lab_settings: Settings) -> None:
    with pytest.raises(MissingValue) as caught:
        substitute(
            {"a": ["${access_token}"]}, scope_for(lab_settings), "steps/04-x.md: action call_api"
        )
    assert "steps/04-x.md: action call_api" in str(caught.value)
    assert "${access_token}" in str(caught.value)


def test_unknown_endpoint_and_key_field_are_missing(lab_settings: Settings) -> None:
    for name in ("${endpoints.nowhere}", "${keys.human.idjag-learner.secret}"):
        with pytest.raises(MissingValue):
            substitute(name, scope_for(lab_settings))


def test_body_fill_keeps_unknown_names_as_written() -> None:
    text = fill_body("seen {{ challenge }} and ${later}", lambda n: {"challenge": "Bearer x"}[n])
    assert text == "seen Bearer x and ${later}"


def test_references_lists_every_name() -> None:
    assert references({"a": ["${x}", "{{ y }}"], "b": 3}) == {"x", "y"}
