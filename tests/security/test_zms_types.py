"""ZMS refuses a field of the wrong type with 400, never reads it as absent.

Found by a value sweep of every ZMS write: an assertion ``effect`` of ``0``, ``[]`` or ``{}``
was stored as ALLOW (``str(x or "ALLOW")``); ``assertions``/``publicKeys`` of ``0`` or ``{}``
emptied the policy or the service's keys; a member ``expiration`` of ``0``, ``[]`` or ``{}``
was dropped, so the membership never expired. Absent (or JSON null) keeps its documented
default; anything else must be the type Athenz's schema names.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pdp.conftest import PdpLab

WRONG_TYPES = [0, False, [], {}, 1.5, ""]
ASSERTION = {"role": "api:role.docs-getter", "resource": "api:docs", "action": "get"}


def refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("effect", WRONG_TYPES)
def test_an_assertion_effect_of_another_type_is_refused_not_allow(
    world: PdpLab, effect: Any
) -> None:
    path = "/domain/api/policy/docs-getter"
    before = world.zms_call("GET", path).json()
    refused(world.zms_call("PUT", path, {"assertions": [{**ASSERTION, "effect": effect}]}))
    refused(world.zms_call("PUT", f"{path}/assertion", {**ASSERTION, "effect": effect}))
    assert world.zms_call("GET", path).json()["assertions"] == before["assertions"]


def test_an_absent_effect_is_still_allow_and_case_is_normalised(world: PdpLab) -> None:
    path = "/domain/api/policy/fuzz-defaults"
    body = {"assertions": [ASSERTION, {**ASSERTION, "action": "post", "effect": "deny"}]}
    assert world.zms_call("PUT", path, body).status_code < 300
    effects = [a["effect"] for a in world.zms_call("GET", path).json()["assertions"]]
    assert effects == ["ALLOW", "DENY"]


@pytest.mark.parametrize("value", [0, {}, "x", True])
def test_assertions_and_public_keys_of_another_type_are_refused(world: PdpLab, value: Any) -> None:
    refused(world.zms_call("PUT", "/domain/api/policy/docs-getter", {"assertions": value}))
    service = world.zms_call("GET", "/domain/mcp/service/api-mcp").json()
    refused(world.zms_call("PUT", "/domain/mcp/service/api-mcp", {**service, "publicKeys": value}))
    assert world.zms_call("GET", "/domain/mcp/service/api-mcp").json()["publicKeys"]


@pytest.mark.parametrize("expiration", [0, [], {}, "", 1767225600])
def test_a_member_expiration_that_is_not_a_timestamp_is_refused(
    world: PdpLab, expiration: Any
) -> None:
    member = "human.idjag-learner"
    role = world.zms_call("GET", "/domain/api/role/docs-getter").json()
    refused(
        world.zms_call(
            "PUT",
            f"/domain/api/role/docs-getter/member/{member}",
            {"memberName": member, "expiration": expiration},
        )
    )
    refused(
        world.zms_call(
            "PUT",
            "/domain/api/role/docs-getter",
            {**role, "roleMembers": [{"memberName": member, "expiration": expiration}]},
        )
    )
    assert world.zms_call("GET", "/domain/api/role/docs-getter").json() == role


@pytest.mark.parametrize("flag", ["enabled", "auditEnabled"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, [], {}, 10**30])
def test_a_domain_flag_that_is_not_a_boolean_is_refused(
    world: PdpLab, flag: str, value: Any
) -> None:
    """``{"enabled": "false"}`` created an enabled domain (``bool("false")`` is True)."""
    refused(world.zms_call("POST", "/domain", {"name": "flagged", flag: value}))
    assert world.zms_call("GET", "/domain/flagged").status_code == 404


def test_domain_flags_keep_their_defaults_and_take_booleans(world: PdpLab) -> None:
    created = world.zms_call("POST", "/domain", {"name": "flags", "enabled": False})
    assert created.status_code == 200, created.text
    assert (created.json()["enabled"], created.json()["auditEnabled"]) == (False, False)
