"""The document API over real HTTP: open and protected instances, one SQLite store."""

from __future__ import annotations

import httpx
import pytest

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.docapi.app import create_app
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey
from lab.oauth.tokens import TYP_ID_JAG
from tests.docapi.conftest import DocApi

DEFAULT_DOCS = [
    {"id": 1, "name": "first default doc", "content": "hello world"},
    {"id": 2, "name": "second default doc", "content": "how are you?"},
]
LEARNER = "human.idjag-learner"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------------ unprotected


def test_unprotected_instance_lists_the_two_default_documents(docapi: DocApi) -> None:
    response = httpx.get(f"{docapi.unprotected}/api/docs")
    assert response.status_code == 200
    assert response.json() == {"docs": DEFAULT_DOCS}


def test_health_names_the_part(docapi: DocApi) -> None:
    body = httpx.get(f"{docapi.protected}/healthz").json()
    assert body["status"] == "ok" and body["part"] == "docapi"


def test_created_document_survives_a_restart_and_is_shared_by_both_instances(
    docapi: DocApi, lab_settings: Settings
) -> None:
    created = httpx.post(f"{docapi.unprotected}/api/docs", json={"name": "notes", "content": "abc"})
    assert created.status_code == 201
    assert created.json() == {"success": True, "doc": {"id": 3, "name": "notes", "content": "abc"}}
    # A new app over the same $LAB_HOME (a restart) sees it, through the ASGI interface.
    restarted = create_app(lab_settings, protected=False)
    docs = restarted.state.store.all()
    assert {"id": 3, "name": "notes", "content": "abc"} in docs
    one = httpx.get(f"{docapi.unprotected}/api/docs/3")
    assert one.json() == {"doc": {"id": 3, "name": "notes", "content": "abc"}}


def test_delete_removes_the_document_and_a_second_delete_is_404(docapi: DocApi) -> None:
    deleted = httpx.delete(f"{docapi.unprotected}/api/docs/2")
    assert deleted.status_code == 200
    assert deleted.json()["doc"]["id"] == 2
    again = httpx.delete(f"{docapi.unprotected}/api/docs/2")
    assert again.status_code == 404
    assert again.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"name": 5, "content": "x"}, "'name' must be a non-empty string"),
        ({"name": "", "content": "x"}, "'name' must be a non-empty string"),
        ({"name": "n" * 201, "content": "x"}, "at most 200"),
        ({"name": "n", "content": ["x"]}, "'content' must be a string"),
        ({"name": "n", "content": "c" * 10_001}, "at most 10000"),
        ({"name": "n", "content": "c", "owner": "me"}, "unknown field(s): owner"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_invalid_document_is_a_400_naming_the_problem(
    docapi: DocApi, body: object, needle: str
) -> None:
    response = httpx.post(f"{docapi.unprotected}/api/docs", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert needle in response.json()["error_description"]


def test_non_json_body_is_415_and_broken_json_is_400(docapi: DocApi) -> None:
    text = httpx.post(
        f"{docapi.unprotected}/api/docs", content=b"name=x", headers={"content-type": "text/plain"}
    )
    assert text.status_code == 415
    assert text.json()["error"] == "invalid_request"
    broken = httpx.post(
        f"{docapi.unprotected}/api/docs",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["error_description"] == "request body is not valid JSON"


def test_oversized_body_is_413_not_a_crash(docapi: DocApi) -> None:
    response = httpx.post(
        f"{docapi.unprotected}/api/docs",
        content=b'{"name": "x", "content": "' + b"a" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("doc_id", ["abc", "0", "-1", "1.5", "99999999999999999999", "١"])
def test_malformed_document_id_is_400(docapi: DocApi, doc_id: str) -> None:
    response = httpx.get(f"{docapi.unprotected}/api/docs/{doc_id}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_unknown_document_is_404(docapi: DocApi) -> None:
    response = httpx.get(f"{docapi.unprotected}/api/docs/77")
    assert response.status_code == 404
    assert response.json()["error_description"] == "no document with id 77"


# ------------------------------------------------------------------------------ maintenance


def test_reset_needs_the_admin_assertion_and_restores_the_defaults(docapi: DocApi) -> None:
    httpx.delete(f"{docapi.unprotected}/api/docs/1")
    httpx.post(f"{docapi.unprotected}/api/docs", json={"name": "extra", "content": "x"})

    anonymous = httpx.post(f"{docapi.unprotected}/lab/reset")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"

    reset = httpx.post(
        f"{docapi.unprotected}/lab/reset", headers=docapi.admin_headers(docapi.unprotected)
    )
    assert reset.status_code == 200
    assert reset.json() == {"docs": DEFAULT_DOCS}
    created = httpx.post(f"{docapi.unprotected}/api/docs", json={"name": "after", "content": "y"})
    assert created.json()["doc"]["id"] == 3


def test_admin_assertion_for_another_instance_is_refused(docapi: DocApi) -> None:
    response = httpx.post(
        f"{docapi.unprotected}/lab/reset", headers=docapi.admin_headers(docapi.protected)
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_assertion_signed_by_another_key_is_refused(docapi: DocApi, lab_settings: Settings) -> None:
    other = SigningKey.load_or_create(lab_settings.keys_dir / "intruder.pem")
    token = make_admin_assertion(ADMIN_PRINCIPAL, other, docapi.protected)
    response = httpx.get(f"{docapi.protected}/lab/state", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_state_export_and_import_round_trip(docapi: DocApi) -> None:
    def headers() -> dict[str, str]:  # admin assertions are single use: a fresh one per call
        return docapi.admin_headers(docapi.protected)

    state = {"docs": [{"id": 7, "name": "seven", "content": "7"}]}
    put = httpx.put(f"{docapi.protected}/lab/state", json=state, headers=headers())
    assert put.status_code == 200
    assert httpx.get(f"{docapi.protected}/lab/state", headers=headers()).json() == state
    assert httpx.get(f"{docapi.unprotected}/api/docs").json() == state
    bad = httpx.put(
        f"{docapi.protected}/lab/state", json={"docs": [{"id": "x"}]}, headers=headers()
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_request"


# ------------------------------------------------------------------------------ protected: 401


def test_protected_instance_without_token_is_401_with_a_bare_bearer_challenge(
    docapi: DocApi,
) -> None:
    response = httpx.get(f"{docapi.protected}/api/docs")
    assert response.status_code == 401
    # RFC 6750 §3.1: no credentials → no error code in the challenge.
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "unauthorized"


def test_token_with_tampered_signature_is_401_invalid_token(docapi: DocApi) -> None:
    token = docapi.zts.token(LEARNER, ["docs-getter"])
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(tampered))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


def test_mcp_audience_token_passed_through_is_401_for_the_wrong_audience(
    docapi: DocApi, lab_settings: Settings
) -> None:
    token = docapi.zts.token(LEARNER, ["docs-getter"], aud=lab_settings.endpoints.mcp)
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "token audience is not accepted here (accepted: api)",
    }


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"typ": TYP_ID_JAG}, "token type"),
        ({"lifetime_s": -120}, "token has expired"),
        ({"issuer": "http://127.0.0.1:1/zts/v1"}, "token issuer is not accepted here"),
    ],
)
def test_wrong_kind_expired_or_foreign_token_is_401(
    docapi: DocApi, kwargs: dict, reason: str
) -> None:
    token = docapi.zts.token(LEARNER, ["docs-getter"], **kwargs)
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert reason in response.json()["error_description"]


def test_token_from_an_unknown_key_is_401(docapi: DocApi, lab_settings: Settings) -> None:
    rogue = SigningKey.load_or_create(lab_settings.keys_dir / "rogue.pem")
    token = docapi.zts.token(LEARNER, ["docs-getter"], key=rogue)
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert response.status_code == 401
    assert "unknown signing key id" in response.json()["error_description"]


def test_authentication_comes_before_body_validation(docapi: DocApi) -> None:
    response = httpx.post(
        f"{docapi.protected}/api/docs", content=b"junk", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
