"""The PDP keeps its policy answers (roles held, access decisions) per domain view: a kept
answer must never outlive the membership it counted nor the policy it was decided on."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from lab.pdp import core
from lab.pdp.core import Pdp
from lab.pdp.store import timestamp
from tests.pdp.conftest import PdpLab

ROLE = "api:role.docs-getter"
#: A principal holding nothing in the lab's world: only what a test grants it.
CARRIER = "ai.carrier"


@pytest.fixture
def pdp(world: PdpLab) -> Pdp:
    return Pdp.open(world.settings)


class Clock:
    """``lab.pdp.core``'s clock, moved by the test (the view is asked at the time it is given)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(core, "time", SimpleNamespace(time=fake.time))
    return fake


def _grant(pdp: Pdp, member: dict[str, Any]) -> None:
    """``CARRIER`` may carry docs-getter (zts.jag_exchange) through this membership only."""
    pdp.store.put_object(
        "roles", "api", "carriers", {"name": "api:role.carriers", "roleMembers": [member]}
    )
    pdp.store.put_object(
        "policies",
        "api",
        "carry",
        {
            "name": "api:policy.carry",
            "assertions": [
                {"role": "api:role.carriers", "resource": ROLE, "action": "zts.jag_exchange"}
            ],
        },
    )


def test_a_kept_decision_ends_when_the_membership_it_counted_expires(
    pdp: Pdp, clock: Clock
) -> None:
    _grant(pdp, {"memberName": CARRIER, "expiration": timestamp(clock.now + 60)})
    assert pdp.check_access(CARRIER, "zts.jag_exchange", ROLE).allowed
    assert "api:role.carriers" in pdp.roles_of("api", CARRIER)
    clock.now += 59
    assert pdp.check_access(CARRIER, "zts.jag_exchange", ROLE).allowed  # kept, still true
    clock.now += 2  # past the expiration: the same question is decided again
    assert not pdp.check_access(CARRIER, "zts.jag_exchange", ROLE).allowed
    assert "api:role.carriers" not in pdp.roles_of("api", CARRIER)


def test_a_kept_decision_ends_with_a_write_to_its_domain(pdp: Pdp) -> None:
    _grant(pdp, {"memberName": CARRIER})
    assert pdp.check_access(CARRIER, "zts.jag_exchange", ROLE).allowed
    assert "api:role.carriers" in pdp.roles_of("api", CARRIER)
    pdp.store.put_object("roles", "api", "carriers", {"name": "api:role.carriers"})
    assert not pdp.check_access(CARRIER, "zts.jag_exchange", ROLE).allowed
    assert "api:role.carriers" not in pdp.roles_of("api", CARRIER)


def test_a_kept_role_list_is_a_copy(pdp: Pdp) -> None:
    _grant(pdp, {"memberName": CARRIER})
    pdp.roles_of("api", CARRIER).append("api:role.forged")
    assert "api:role.forged" not in pdp.roles_of("api", CARRIER)


def test_kept_answers_are_bounded(pdp: Pdp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "ANSWERS_KEPT", 8)
    for index in range(50):
        pdp.check_access(f"ai.client{index}", "zts.jag_exchange", ROLE)
    assert len(pdp._answers) <= 8
