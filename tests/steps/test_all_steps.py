"""Every step of steps/ passes on the embedded backend from a fresh baseline, and each deliberate
failure is really observed (status and OAuth error) before the step that fixes it.

The lab runs as a learner runs it: `lab up`, `lab verify --json`, `lab down`, in a private
$LAB_HOME on free loopback ports (never the default ones; tests/stack.py). The stack is started
once per test process and shared with test_reset_to_each_step.py (see :func:`shared_lab`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.steps.load import load_steps
from tests.stack import Stack, embedded_stack

#: Generous: a whole `lab verify` takes seconds, but CI machines can be slow.
COMMAND_TIMEOUT_S = 600


@dataclass
class LabProcess:
    """A running embedded lab in its own $LAB_HOME, driven through the real CLI, verified once."""

    stack: Stack
    verify_report: Any = None
    verify_output: str = ""
    verify_exit: int | None = None

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    def lab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.stack.lab(*args, timeout=COMMAND_TIMEOUT_S)


_SHARED: LabProcess | None = None


def shared_lab(config: pytest.Config, tmp_root: Path) -> LabProcess:
    """One lab per test process, shared by this module and test_reset_to_each_step.py: up, then
    `lab verify --json` once (which also leaves a checkpoint after each step)."""
    global _SHARED
    if _SHARED is not None:
        return _SHARED
    exits = contextlib.ExitStack()
    config.add_cleanup(exits.close)
    stack = exits.enter_context(embedded_stack(tmp_root / "lab-home"))
    lab = LabProcess(stack)
    report_path = stack.home / "verify.json"
    proc = lab.lab("verify", "--json", str(report_path))
    lab.verify_exit = proc.returncode
    lab.verify_output = proc.stdout + proc.stderr
    if report_path.exists():
        lab.verify_report = json.loads(report_path.read_text(encoding="utf-8"))
    _SHARED = lab
    return lab


@pytest.fixture(scope="session")
def verified_lab(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabProcess]:
    yield shared_lab(pytestconfig, tmp_path_factory.mktemp("steps-e2e"))


# -- reading the verify report ----------------------------------------------------------------


def step_records(report: Any) -> dict[int, dict[str, Any]]:
    records = report.get("steps", report) if isinstance(report, dict) else report
    assert isinstance(records, list), f"verify JSON has no list of steps: {str(report)[:300]}"
    return {int(r["number"]): r for r in records if isinstance(r, dict) and "number" in r}


def checks_of(record: Any) -> list[dict[str, Any]]:
    """Every check in a step record, in order, wherever the report nests them."""
    found: list[dict[str, Any]] = []
    if isinstance(record, dict):
        if {"action", "passed", "expected"} <= set(record):
            found.append(record)
        for value in record.values():
            found.extend(checks_of(value))
    elif isinstance(record, list):
        for item in record:
            found.extend(checks_of(item))
    return found


def action_order(record: dict[str, Any]) -> list[str]:
    order: list[str] = []
    for check in checks_of(record):
        if check["action"] not in order:
            order.append(check["action"])
    return order


def passed_check(record: dict[str, Any], action: str, query_word: str, expected: Any) -> bool:
    """A passed check of ``action`` whose query mentions ``query_word`` and expects ``expected``."""
    return any(
        c["action"] == action
        and c["passed"] is True
        and c.get("expected") == expected
        and query_word in f"{c.get('query', '')} {c.get('check', '')}"
        for c in checks_of(record)
    )


#: The refusals each failure step must observe: (action, status, OAuth error or tool-error text).
REFUSALS: dict[int, list[tuple[str, int | None, str]]] = {
    1: [("protected_without_token", 401, "unauthorized")],
    3: [("request_token_without_membership", 403, "invalid_scope")],
    6: [("exchange_by_hand", 403, "unauthorized_client")],
    8: [("call_with_docs_getter_only", 403, 'error="insufficient_scope"')],
    10: [("id_jag_untrusted", 400, "invalid_grant")],
    11: [("id_jag_denied", 403, "unauthorized_client")],
    13: [
        ("prompt_with_held_token", None, "HTTP 403 invalid_scope"),
        ("direct_token_refused", 403, "invalid_scope"),
    ],
    14: [("id_jag_for_poster_refused", 403, "unauthorized_client")],
    15: [
        ("agent_delete", None, "HTTP 403 insufficient_scope"),
        ("delete_with_exchanged_token", 403, "insufficient_scope"),
    ],
    16: [
        ("redeem_replayed", 400, "invalid_grant"),
        ("id_token_as_assertion", 400, "invalid_grant"),
        ("tampered_token_at_api", 401, "invalid_token"),
        ("passthrough_at_api", 401, "invalid_token"),
        ("id_jag_without_audience", 400, "invalid_request"),
        ("id_jag_for_unregistered_resource", 400, "invalid_target"),
        ("redeem_without_resource", 400, "invalid_grant"),
        ("redeem_for_other_resource", 400, "invalid_grant"),
        ("api_token_refused_at_mcp", 401, 'error="invalid_token"'),
        ("claim_mcp_url", 409, "conflict"),
    ],
    18: [
        ("id_jag_not_allow_listed", 400, "invalid_target"),
        ("id_jag_without_client_secret", 401, "unauthorized_client"),
        ("id_jag_resource_mismatch", 400, "invalid_target"),
    ],
    19: [
        ("redeem_not_trusted_to_grant", 400, "invalid_grant"),
        ("redeem_replayed", 400, "invalid_grant"),
    ],
    20: [("ask_again", None, "F2: role configured, membership missing")],
}

#: Where each refusal is fixed: (step, action that then succeeds). Steps 13, 15 and 16 teach a
#: refusal that stays a refusal, so they have no fix.
FIXES: dict[int, tuple[int, str]] = {
    1: (4, "call_api"),
    3: (4, "request_token"),
    6: (7, "list_docs_via_mcp"),
    8: (8, "call_with_both_roles"),
    10: (10, "id_jag_trusted"),
    11: (11, "id_jag_issued"),
    14: (14, "create_allowed"),
    18: (18, "id_jag_from_idp"),
    19: (19, "redeem_external"),
    20: (20, "ask_once_more"),
}


def test_step_files_cover_the_catalog() -> None:
    steps = load_steps()
    assert [s.number for s in steps] == list(range(1, 21))
    assert [s.slug for s in steps] == [
        "document-api", "domain-role-policy", "service-identity", "role-membership", "mcp-server",
        "mcp-token-exchange-denied", "grant-token-exchange", "protect-mcp", "sign-in", "trust-idp",
        "id-jag-policy", "id-jag-end-to-end", "revoke-membership", "challenge-post-docs",
        "agent-deny", "replay", "audit-trail", "idp-issues-id-jag", "external-id-jag",
        "bring-your-own-client",
    ]  # fmt: skip


def test_every_expectation_says_why() -> None:
    missing = [
        f"{s.name}:{a.id}:{e.describe()}"
        for s in load_steps()
        for a in (*s.actions, *s.check_actions)
        for e in a.expectations
        if not e.why.strip()
    ]
    assert missing == []


def test_every_state_changing_step_has_a_check_block() -> None:
    state_changing = {2, 3, 4, 5, 7, 8, 10, 11, 13, 14, 15, 16, 17, 19, 20}
    without = [s.number for s in load_steps() if s.number in state_changing and not s.check_actions]
    assert without == []


def test_verify_passes_every_step(verified_lab: LabProcess) -> None:
    assert verified_lab.verify_report is not None, verified_lab.verify_output[-4000:]
    records = step_records(verified_lab.verify_report)
    failed = {
        n: r.get("message") or r.get("status")
        for n, r in records.items()
        if r.get("status") != "passed"
    }
    assert failed == {}, verified_lab.verify_output[-4000:]
    assert sorted(records) == list(range(1, 21))
    assert verified_lab.verify_exit == 0, verified_lab.verify_output[-4000:]


@pytest.mark.parametrize("number", sorted(REFUSALS))
def test_failure_step_observes_its_refusal(verified_lab: LabProcess, number: int) -> None:
    assert verified_lab.verify_report is not None, verified_lab.verify_output[-4000:]
    record = step_records(verified_lab.verify_report)[number]
    for action, status, error in REFUSALS[number]:
        if status is not None:
            assert passed_check(record, action, "status", status), (
                f"step {number} {action}: no passed status {status}"
            )
            assert passed_check(record, action, "", error), (
                f"step {number} {action}: no passed check for {error!r}"
            )
        else:
            assert passed_check(record, action, "is_error", True), (
                f"step {number} {action}: tool did not fail"
            )
            assert passed_check(record, action, "text", error), (
                f"step {number} {action}: no {error!r} in the tool error"
            )


@pytest.mark.parametrize("number", sorted(FIXES))
def test_failure_is_fixed_after_it_was_observed(verified_lab: LabProcess, number: int) -> None:
    assert verified_lab.verify_report is not None, verified_lab.verify_output[-4000:]
    records = step_records(verified_lab.verify_report)
    refusal_action = REFUSALS[number][0][0]
    fix_step, fix_action = FIXES[number]
    fix_checks = [c for c in checks_of(records[fix_step]) if c["action"] == fix_action]
    assert fix_checks and all(c["passed"] for c in fix_checks), (
        f"step {fix_step} {fix_action} did not pass"
    )
    if fix_step == number:
        order = action_order(records[number])
        assert order.index(refusal_action) < order.index(fix_action)
