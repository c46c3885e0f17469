"""The realm file is read, not trusted: errors name file and field; unknown fields warn."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.config import Settings
from lab.idp.app import DEFAULT_REALM_FILE, create_app
from lab.idp.realm import RealmFileError, load_realm

EditRealm = Callable[[Callable[[dict[str, Any]], None]], Path]


def test_shipped_realm_file_matches_the_lab() -> None:
    realm = load_realm(DEFAULT_REALM_FILE)
    assert realm.name == "idjag"
    assert realm.access_token_lifespan == 3600
    agent = realm.client("ai.agent")
    assert agent is not None
    assert not agent.public_client and agent.secret
    assert agent.standard_flow and agent.direct_access_grants
    assert agent.pkce_method == "S256"
    assert set(agent.redirect_uris) == {"http://127.0.0.1/*", "http://localhost/*"}
    learner = realm.user_by_username("idjag-learner")
    assert learner is not None
    assert (learner.email, learner.first_name, learner.last_name) == (
        "idjag-learner@example.com",
        "ID-JAG",
        "Learner",
    )
    assert learner.password == "password"
    assert realm.user_by_username("idjag-other") is not None


def test_shipped_realm_file_uses_keycloak_import_shapes() -> None:
    """What Keycloak's importer needs: type/value/temporary credentials, the default role."""
    document = json.loads(DEFAULT_REALM_FILE.read_text())
    for user in document["users"]:
        assert user["credentials"] == [
            {"type": "password", "value": "password", "temporary": False}
        ]
        assert user["realmRoles"] == ["default-roles-idjag"]
    assert document["clients"][0]["attributes"]["pkce.code.challenge.method"] == "S256"


def test_default_realm_file_does_not_depend_on_the_working_directory(
    lab_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_app(lab_settings)
    assert app.state.idp.realm.name == "idjag"


def test_unknown_field_is_ignored_with_a_warning(
    write_realm: EditRealm, caplog: pytest.LogCaptureFixture
) -> None:
    def add(realm: dict[str, Any]) -> None:
        realm["accesTokenLifespan"] = 10
        realm["clients"][0]["colour"] = "blue"

    with caplog.at_level(logging.WARNING, logger="lab.idp"):
        realm = load_realm(write_realm(add))
    assert realm.access_token_lifespan == 3600
    assert "'accesTokenLifespan'" in caplog.text
    assert "'clients[0].colour'" in caplog.text


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"realm": "idjag",')
    with pytest.raises(RealmFileError) as error:
        load_realm(path)
    assert str(path) in str(error.value)
    assert "not valid JSON" in str(error.value)


def test_missing_file_is_a_realm_file_error(tmp_path: Path) -> None:
    with pytest.raises(RealmFileError) as error:
        load_realm(tmp_path / "absent.json")
    assert "cannot be read" in str(error.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r.pop("realm"), "realm"),
        (lambda r: r.pop("clients"), "clients"),
        (lambda r: r["clients"][0].pop("clientId"), "clients[0].clientId"),
        (lambda r: r["clients"][0].pop("secret"), "clients[0].secret"),
        (lambda r: r["users"][1].pop("username"), "users[1].username"),
        (lambda r: r["users"][0].pop("id"), "users[0].id"),
        (lambda r: r["users"][0].update(id="not-a-uuid"), "users[0].id"),
        (lambda r: r.update(accessTokenLifespan="an hour"), "accessTokenLifespan"),
        (
            lambda r: r["clients"][0].update(redirectUris="http://127.0.0.1/*"),
            "clients[0].redirectUris",
        ),
        (
            lambda r: r["clients"][0].update(directAccessGrantsEnabled="yes"),
            "clients[0].directAccessGrantsEnabled",
        ),
    ],
    ids=[
        "realm",
        "clients",
        "clientId",
        "secret",
        "username",
        "user-id",
        "user-id-uuid",
        "lifespan-type",
        "redirect-uris-type",
        "flag-type",
    ],
)
def test_missing_or_mistyped_field_is_named(
    write_realm: EditRealm, edit: Callable[[dict[str, Any]], Any], field: str
) -> None:
    path = write_realm(lambda realm: (edit(realm), None)[1])
    with pytest.raises(RealmFileError) as error:
        load_realm(path)
    assert error.value.field == field
    assert str(path) in str(error.value)
    assert repr(field) in str(error.value)


def test_a_document_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(RealmFileError):
        load_realm(path)


def test_create_app_raises_the_typed_error_for_a_bad_file(
    lab_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    with pytest.raises(RealmFileError) as error:
        create_app(lab_settings, path)
    assert error.value.field == "realm"
