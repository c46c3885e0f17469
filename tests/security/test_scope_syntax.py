"""A ``scope`` is read by RFC 6749 §3.3's grammar everywhere: spaces separate, printable ASCII.

Found by an outsider's battery (sixth session): the PDP and the IdP split ``scope`` with
Python's ``str.split()``, which also splits on tab, line breaks, NBSP, U+3000, U+0085, U+001F
and U+2028, so ``api:role.docs-getter\\u00a0mcp:role.mcp-accessor`` was granted as two roles
where Keycloak and Athenz (both split on ``" "``) see one malformed value; the PDP lower-cased a
value before checking it, so ``api:role.\\u212aey`` (the Kelvin sign) named ``api:role.key``;
and the IdP wrote whatever ``scope`` it was sent (NUL, line breaks, look-alikes) into the
ID-JAG it signed. No role was granted that the principal did not hold, but one text had two
readings. Now ``lab.oauth.scopes.scope_values`` is the one reading: at each PDP grant, the
IdP's ID-JAG issuance and its own grants, a value outside the grammar is 400 ``invalid_scope``.
The IdP, standing in for Keycloak, reads a request's scope as Keycloak does
(``keycloak_scope_values``: a leading or doubled space is an empty, unknown value;
``tests/keycloak/test_hostile_requests_against_keycloak.py`` compares). Shown failing with
``parse_scope``, ``resolve_scopes`` and the IdP's ID-JAG back on
``str.split()`` (every case below but the guards).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lab.oauth.errors import InvalidScope
from lab.oauth.jose import unverified_claims
from lab.oauth.scopes import ScopeSyntaxError, keycloak_scope_values, scope_values
from lab.pdp.zts.grants.base import parse_scope
from tests.idp.helpers import Idp
from tests.security.test_idp_parameter_battery import (  # noqa: F401  (module fixture)
    JAG_SCOPE,
    id_token,
    idp,
    jag_form,
    password_form,
    token,
)
from tests.security.test_parameter_battery import base_form, genuine, send_form
from tests.security.test_token_battery import Kit, kit  # noqa: F401  (module fixture)

#: Characters ``str.split()`` splits on that RFC 6749 §3.3 does not: none separates values.
NOT_SEPARATORS = ["\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2028"]
NOT_SEPARATORS += ["\u3000", "\u2003", "\u200b"]


def test_scope_values_split_on_spaces_only_and_refuse_the_rest() -> None:
    assert scope_values("openid  api:role.a   b ") == ["openid", "api:role.a", "b"]
    assert scope_values("") == []
    for odd in [*NOT_SEPARATORS, "\x00", '"', "\\", "\u212a", "\xe9", "\ud800"]:
        with pytest.raises(ScopeSyntaxError) as refused:
            scope_values(f"api:role.a{odd}b")
        assert f"U+{ord(odd[0]):04X}" in str(refused.value)


def test_keycloaks_reading_keeps_a_leading_or_inner_empty_value_and_drops_trailing_ones() -> None:
    """Java's ``"a  b".split(" ")`` is ``[a, "", b]``; ``"a b  ".split(" ")`` is ``[a, b]``."""
    assert keycloak_scope_values("openid profile  ") == ["openid", "profile"]
    assert keycloak_scope_values("   ") == []
    for text in ("openid  profile", " openid", ""):
        with pytest.raises(ScopeSyntaxError):
            keycloak_scope_values(text)
    with pytest.raises(ScopeSyntaxError):
        keycloak_scope_values("openid\tprofile")


@pytest.mark.parametrize("value", ["api:role.\u212aey", "\u212api:domain", "api:role.a\u3000"])
def test_the_pdp_reads_no_look_alike_as_an_ascii_role(value: str) -> None:
    with pytest.raises(InvalidScope) as refused:
        parse_scope(value, multi_domain=True)
    assert refused.value.error == "invalid_scope" and refused.value.status_code == 400


TARGETS = ["id-jag", "redeem", "client-credentials", "exchange"]


def scope_of(form: dict[str, str | None]) -> str:
    """The genuine request's scope (a redemption names none: the ID-JAG's)."""
    return str(form.get("scope") or JAG_SCOPE)


@pytest.mark.parametrize("target", TARGETS)
def test_no_pdp_grant_splits_a_scope_on_anything_but_a_space(
    kit: Kit,  # noqa: F811
    target: str,
) -> None:
    found: list[str] = []
    for odd in NOT_SEPARATORS:
        name, attempt = genuine(kit, target)
        form = {**base_form(kit, name, attempt.token)}
        form["scope"] = f"{scope_of(form)}{odd}openid"
        response = send_form(kit, attempt.client, form)
        error = response.json().get("error")
        if (response.status_code, error) != (400, "invalid_scope"):
            found.append(f"{target} {odd!r}: {response.status_code} {error}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("target", TARGETS)
def test_runs_of_spaces_still_separate_at_every_pdp_grant(
    kit: Kit,  # noqa: F811
    target: str,
) -> None:
    """The guard: a scope with doubled, leading and trailing spaces is still the scope."""
    name, attempt = genuine(kit, target)
    form = {**base_form(kit, name, attempt.token)}
    form["scope"] = "  " + scope_of(form).replace(" ", "   ") + "  openid "
    response = send_form(kit, attempt.client, form)
    assert response.status_code == 200, response.text


def _refused(response: httpx.Response, described: str) -> list[str]:
    body: dict[str, Any] = response.json()
    if (response.status_code, body.get("error")) != (400, "invalid_scope"):
        return [f"{described}: {response.status_code} {response.text[:160]}"]
    return []


def test_the_idps_id_jag_carries_no_scope_outside_the_grammar(idp: Idp) -> None:  # noqa: F811
    subject = id_token(idp)
    found: list[str] = []
    for odd in [*NOT_SEPARATORS, "\x00", "\u212a"]:
        form = {**jag_form(idp, subject), "scope": f"api:role.docs-getter{odd}mcp:role.x"}
        found += _refused(token(idp, form), f"ID-JAG scope with {odd!r}")
    assert not found, "\n".join(found)
    trailing = token(idp, {**jag_form(idp, subject), "scope": f"{JAG_SCOPE}  "})
    assert trailing.status_code == 200, trailing.text
    assert unverified_claims(trailing.json()["access_token"])["scope"] == JAG_SCOPE
    # The IdP reads scope as Keycloak does: a doubled or leading space is an empty value.
    for spaced in (JAG_SCOPE.replace(" ", "  "), f" {JAG_SCOPE}"):
        found += _refused(token(idp, {**jag_form(idp, subject), "scope": spaced}), repr(spaced))
    assert not found, "\n".join(found)


def test_the_idps_own_grants_split_a_scope_on_spaces_only(idp: Idp) -> None:  # noqa: F811
    found: list[str] = []
    for odd in NOT_SEPARATORS:
        form = {**password_form(), "scope": f"openid{odd}profile"}
        found += _refused(token(idp, form), f"password grant scope with {odd!r}")
    assert not found, "\n".join(found)
    fine = token(idp, {**password_form(), "scope": "openid profile  "})
    assert fine.status_code == 200, fine.text
    # Keycloak's reading (Java's split(" ")): an inner or leading empty value is unknown.
    for spaced in ("openid  profile", " openid", ""):
        found += _refused(token(idp, {**password_form(), "scope": spaced}), repr(spaced))
    assert not found, "\n".join(found)
