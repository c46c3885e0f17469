"""A role member named more than once is stored once (issue #16, "duplicate role members stored
repeatedly"): the last entry wins, in a whole-role PUT and through the membership endpoint.
"""

from __future__ import annotations

from typing import Any

from tests.pdp.conftest import AGENT, LEARNER, PdpLab


def members(lab: PdpLab, role: str) -> list[dict[str, Any]]:
    body = lab.ok("GET", f"/domain/api/role/{role}").json()
    return list(body["roleMembers"])


def test_a_member_named_twice_in_a_role_is_stored_once_the_last_entry_winning(
    world: PdpLab,
) -> None:
    later = "2099-01-01T00:00:00.000Z"
    world.ok(
        "PUT",
        "/domain/api/role/twice",
        {
            "name": "api:role.twice",
            "roleMembers": [
                {"memberName": LEARNER},
                {"memberName": AGENT},
                {"memberName": LEARNER, "expiration": later},
            ],
        },
    )
    stored = members(world, "twice")
    assert [m["memberName"] for m in stored] == [AGENT, LEARNER]
    assert stored[-1]["expiration"].startswith("2099-01-01T00:00:00")


def test_adding_an_existing_member_again_keeps_one_entry(world: PdpLab) -> None:
    world.role("api", "again", [LEARNER])
    for _ in range(3):
        world.ok("PUT", f"/domain/api/role/again/member/{LEARNER}", {"memberName": LEARNER})
    assert [m["memberName"] for m in members(world, "again")] == [LEARNER]
