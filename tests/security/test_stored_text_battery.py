"""Every write API that stores a name or free text, given text no one should store.

The document API (both ports, and its admin ``/lab/state``) and ZMS (domains, subdomains,
roles, members, policies, assertions, services, their descriptions and other free text) are
each sent, one field at a time and with genuine credentials, values holding NUL, other C0 and
C1 control characters, DEL, lone UTF-16 surrogates (as JSON ``\\ud800`` escapes), line
separators and bidirectional overrides, values over the field's length, and the Kelvin sign
(which ``str.lower()`` folds to ASCII ``k``). Each must be refused with 400 ``invalid_request``
whose description names the field or the character (``U+XXXX``) - never a 500, never stored,
never folded into an ASCII twin - and reads afterwards still answer.

Free text (a document's content, a description) keeps tab and line breaks: a guard checks those
are still stored exactly as sent.

Shown able to fail on ``3530208`` (before ``lab/oauth/text.py``): the document API stored
``a\\x00b`` as a name (201), ZMS stored control characters in descriptions and ``org``, and
``\\u212aey`` as a role, policy or service name became ``key``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, public_pem, ybase64_encode
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

#: (what, value): refused in a one-line name.
NOT_IN_NAMES: list[tuple[str, str]] = [
    ("NUL", "a\x00b"),
    ("escape (C0)", "a\x1b[31mb"),
    ("DEL", "a\x7fb"),
    ("NEL (C1)", "a\x85b"),
    ("lone high surrogate", "a\ud800b"),
    ("lone low surrogate", "\udc00"),
    ("line feed", "a\nb"),
    ("line separator", "a\u2028b"),
    ("right-to-left override", "a\u202eb"),
    ("bidi isolate", "a\u2066b"),
]
#: Refused in free text too (tab, line breaks and bidi text are legitimate there).
NOT_IN_TEXT = NOT_IN_NAMES[:6]
#: Athenz names are printable ASCII: these are refused in names, not folded or stripped.
NOT_IN_ATHENZ_NAMES = [
    *NOT_IN_NAMES,
    ("Kelvin sign", "\u212aey"),
    ("trailing unit separator", "key\x1f"),
    ("non-ASCII letter", "cl\u00e9"),
]


def raw(body: Any) -> bytes:
    """JSON with every non-ASCII character escaped, so a lone surrogate travels as ``\\udXXX``
    (it cannot be encoded as UTF-8)."""
    return json.dumps(body, ensure_ascii=True).encode()


class Writer:
    """Requests as the system admin (ZMS, document API ``/lab/*``) or unauthenticated."""

    def __init__(self, lab: RunningLab, http: httpx.Client) -> None:
        self.lab = lab
        self.http = http
        self.key = SigningKey.load_or_create(lab.settings.key_file(ADMIN_PRINCIPAL))

    def zms(self, method: str, path: str, body: Any = None) -> httpx.Response:
        zms = self.lab.endpoints.zms
        token = make_admin_assertion(ADMIN_PRINCIPAL, self.key, zms)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        content = None if body is None else raw(body)
        return self.http.request(method, f"{zms}{path}", content=content, headers=headers)

    def docapi(self, method: str, path: str, body: Any, *, admin: bool = False) -> httpx.Response:
        base = self.lab.endpoints.docapi_unprotected
        headers = {"Content-Type": "application/json"}
        if admin:
            origin = base.split("/", 3)
            audience = "/".join(origin[:3])
            token = make_admin_assertion(ADMIN_PRINCIPAL, self.key, audience)
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, f"{base}{path}", content=raw(body), headers=headers)


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Writer]:
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(full_lab(tmp_path_factory.mktemp("text") / "home"))
        http = stack.enter_context(httpx.Client(timeout=30))
        yield Writer(lab, http)


def refused_precisely(response: httpx.Response, field: str, value: str) -> list[str]:
    """Problems with the answer to a hostile write (none: a precise 400)."""
    described = f"{field}={value[:20]!r}"
    if response.status_code != 400:
        return [f"{described}: HTTP {response.status_code} {response.text[:200]}"]
    body = response.json()
    if body.get("error") != "invalid_request":
        return [f"{described}: error {body.get('error')!r}, not invalid_request"]
    text = str(body.get("error_description", ""))
    # A lone surrogate in a URL path arrives as U+FFFD (its UTF-8 form is not UTF-8).
    named = {f"U+{ord(_first_odd(value)):04X}", "U+FFFD", field}
    if not any(word in text for word in named):
        return [f"{described}: the refusal names neither the field nor the character: {text}"]
    return []


def _first_odd(value: str) -> str:
    for char in value:
        if not (" " <= char <= "~"):
            return char
    return value[0]


# ------------------------------------------------------------------------------ document API


def test_a_document_name_with_unprintable_text_is_refused(writer: Writer) -> None:
    before = writer.docapi("GET", "/api/docs", None).json()["docs"]
    found: list[str] = []
    for _, value in NOT_IN_NAMES:
        response = writer.docapi("POST", "/api/docs", {"name": value, "content": "c"})
        found += refused_precisely(response, "name", value)
    response = writer.docapi("POST", "/api/docs", {"name": "n" * 201, "content": "c"})
    found += refused_precisely(response, "name", "n" * 201)
    assert writer.docapi("GET", "/api/docs", None).json()["docs"] == before
    assert not found, "\n".join(found)


def test_document_content_with_control_characters_is_refused(writer: Writer) -> None:
    found: list[str] = []
    for _, value in NOT_IN_TEXT:
        response = writer.docapi("POST", "/api/docs", {"name": "n", "content": value})
        found += refused_precisely(response, "content", value)
    assert not found, "\n".join(found)


def test_document_content_keeps_tabs_line_breaks_and_bidi_text(writer: Writer) -> None:
    """The guard: free text is not over-refused; it is stored and read back exactly."""
    content = "line one\r\n\tline two\nشكرا \u202eok\u202c \u2028end"
    created = writer.docapi(
        "POST", "/api/docs", {"name": "notes \u00e9t\u00e9", "content": content}
    )
    assert created.status_code == 201, created.text
    doc_id = created.json()["doc"]["id"]
    read = writer.docapi("GET", f"/api/docs/{doc_id}", None)
    assert read.json()["doc"] == {"id": doc_id, "name": "notes \u00e9t\u00e9", "content": content}


def test_the_state_import_refuses_what_a_create_refuses(writer: Writer) -> None:
    """``PUT /lab/state`` (admin) checks every document as a create does."""
    before = writer.docapi("GET", "/lab/state", None, admin=True).json()["docs"]
    for _, value in NOT_IN_NAMES[:6]:
        state = {"docs": [{"id": 1, "name": value, "content": "c"}]}
        response = writer.docapi("PUT", "/lab/state", state, admin=True)
        assert not refused_precisely(response, "name", value), response.text
    assert writer.docapi("GET", "/lab/state", None, admin=True).json()["docs"] == before


# ------------------------------------------------------------------------------ ZMS


def zms_writes(value: str) -> list[tuple[str, str, str, Any]]:
    """(field, method, path, body): one ZMS write per stored name or text, ``value`` in it."""
    v = quote(value, safe="", errors="surrogatepass")
    return [
        ("name", "POST", "/domain", {"name": value}),
        ("parent", "POST", f"/subdomain/{v}", {"name": "sub"}),
        ("adminUsers", "POST", "/domain", {"name": "t1", "adminUsers": [value]}),
        ("role", "PUT", f"/domain/api/role/{v}", {}),
        ("role", "PUT", "/domain/api/role/r1", {"name": f"api:role.{value}"}),
        (
            "member",
            "PUT",
            "/domain/api/role/r1",
            {"roleMembers": [{"memberName": value}]},
        ),
        ("member", "PUT", f"/domain/api/role/docs-getter/member/{v}", {}),
        ("policy", "PUT", f"/domain/api/policy/{v}", {}),
        (
            "role",
            "PUT",
            "/domain/api/policy/p1",
            {"assertions": [{"role": value, "resource": "api:x", "action": "get"}]},
        ),
        (
            "resource",
            "PUT",
            "/domain/api/policy/p1",
            {"assertions": [{"role": "api:role.r1", "resource": f"api:{value}", "action": "get"}]},
        ),
        (
            "action",
            "PUT",
            "/domain/api/policy/p1",
            {"assertions": [{"role": "api:role.r1", "resource": "api:x", "action": value}]},
        ),
        (
            "resource",
            "PUT",
            "/domain/api/policy/docs-getter/assertion",
            {"role": "api:role.docs-getter", "resource": f"api:{value}", "action": "get"},
        ),
        ("service", "PUT", f"/domain/api/service/{v}", {}),
    ]


def zms_text_writes(value: str) -> list[tuple[str, str, str, Any]]:
    """(field, method, path, body): ZMS free text and one-line values other than names."""
    return [
        ("description", "POST", "/domain", {"name": "t2", "description": value}),
        ("org", "POST", "/domain", {"name": "t3", "org": value}),
        ("description", "PUT", "/domain/api/role/r2", {"description": value}),
        ("trust", "PUT", "/domain/api/role/r3", {"trust": value}),
        ("description", "PUT", "/domain/api/service/s1", {"description": value}),
        (
            "providerEndpoint",
            "PUT",
            "/domain/api/service/s2",
            {"providerEndpoint": f"http://127.0.0.1:1/{value}"},
        ),
    ]


@pytest.mark.parametrize(
    ("what", "value"), NOT_IN_ATHENZ_NAMES, ids=[w for w, _ in NOT_IN_ATHENZ_NAMES]
)
def test_a_zms_name_that_is_not_printable_ascii_is_refused_as_sent(
    writer: Writer, what: str, value: str
) -> None:
    """Never stripped or case-folded into an ASCII name (the Kelvin sign into ``key``)."""
    before = writer.zms("GET", "/lab/state").json()
    found: list[str] = []
    for field, method, path, body in zms_writes(value):
        response = writer.zms(method, path, body)
        found += [f"{method} {path[:60]}: {p}" for p in refused_precisely(response, field, value)]
    assert writer.zms("GET", "/lab/state").json() == before, "ZMS stored something"
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("what", "value"), NOT_IN_TEXT, ids=[w for w, _ in NOT_IN_TEXT])
def test_zms_free_text_with_control_characters_is_refused(
    writer: Writer, what: str, value: str
) -> None:
    before = writer.zms("GET", "/lab/state").json()
    found: list[str] = []
    for field, method, path, body in zms_text_writes(value):
        response = writer.zms(method, path, body)
        found += [f"{method} {path[:60]}: {p}" for p in refused_precisely(response, field, value)]
    assert writer.zms("GET", "/lab/state").json() == before, "ZMS stored something"
    assert not found, "\n".join(found)


def test_zms_over_long_and_wrong_typed_text_is_refused(writer: Writer) -> None:
    found: list[str] = []
    for value in ["d" * 1025, {"a": 1}, ["x"], 7]:
        response = writer.zms("POST", "/domain", {"name": "t4", "description": value})
        found += refused_precisely(response, "description", str(value))
    response = writer.zms("PUT", "/domain/api/role/r4", {"trust": "t" * 257})
    found += refused_precisely(response, "trust", "t" * 257)
    assert not found, "\n".join(found)


def test_zms_free_text_keeps_line_breaks_and_non_ascii(writer: Writer) -> None:
    """The guard: a description is free text, stored and read back exactly."""
    description = "Documents API\n\tfor the lab: caf\u00e9, \u6587\u66f8"
    created = writer.zms("POST", "/domain", {"name": "t5", "description": description})
    assert created.status_code == 200, created.text
    read = writer.zms("GET", "/domain/t5")
    assert read.json()["description"] == description


def test_reads_with_hostile_names_answer_400_not_500(writer: Writer) -> None:
    found: list[str] = []
    for _, value in NOT_IN_ATHENZ_NAMES:
        v = quote(value, safe="", errors="surrogatepass")
        for path in (
            f"/domain/{v}",
            f"/domain/api/role/{v}",
            f"/domain/api/policy/{v}",
            f"/domain/api/service/{v}",
            f"/access/get/api:{v}",
        ):
            response = writer.zms("GET", path)
            if response.status_code not in (400, 404):
                found.append(f"GET {path[:60]}: HTTP {response.status_code} {response.text[:100]}")
    assert not found, "\n".join(found)


def test_a_service_key_id_is_a_one_line_name(writer: Writer) -> None:
    key = SigningKey.load_or_create(writer.lab.settings.key_file("api.keytest"))
    encoded = ybase64_encode(public_pem(key.key))
    found: list[str] = []
    for _, value in NOT_IN_NAMES:
        body = {"publicKeys": [{"id": value, "key": encoded}]}
        response = writer.zms("PUT", "/domain/api/service/keytest", body)
        found += refused_precisely(response, "publicKeys[].id", value)
    assert not found, "\n".join(found)


def test_the_zms_state_import_refuses_what_a_write_refuses(writer: Writer) -> None:
    """``PUT /zms/v1/lab/state`` (the system admin's restore) checks names and text as the
    writes do: a state document is no way around them. The lab's own export goes back in.
    (``api`` below: the first domain with both roles and services.)"""
    exported = writer.zms("GET", "/lab/state").json()
    assert writer.zms("PUT", "/lab/state", exported).status_code == 200  # the guard
    api = next(i for i, d in enumerate(exported["domains"]) if d["roles"] and d["services"])
    found: list[str] = []
    for _, value in NOT_IN_TEXT:
        for field, edit in (
            ("description", lambda d, v: d["domains"][api].update(description=v)),
            ("name", lambda d, v: d["domains"][api]["roles"][0].update(name=f"api:role.r{v}")),
            ("name", lambda d, v: d["domains"][api]["services"][0].update(name=f"api.s{v}")),
        ):
            state = json.loads(json.dumps(exported))
            edit(state, value)
            response = writer.zms("PUT", "/lab/state", state)
            found += [f"{field}: {p}" for p in refused_precisely(response, field, value)]
    assert writer.zms("GET", "/lab/state").json() == exported
    assert not found, "\n".join(found)
