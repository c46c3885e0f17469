"""What a step file declares (Step, Action, Capture, Expectation) and what a run produced.

Declarations are frozen: the loader builds them once from YAML. Results are plain frozen data
too, so the terminal renderer, the JSON/JUnit reports and the docs site read the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Every action has exactly one of these keys (docs/reference/step-format.md, "Actions").
ACTION_KINDS = (
    "request", "keygen", "agent", "mcp", "gateway", "setting", "providers", "wait", "audit"
)  # fmt: skip
#: Query words shared by captures and expectations ("Queries").
QUERY_KEYS = ("status", "header", "json", "result", "token", "capture", "body")
#: Predicates on expectations ("Predicates").
PREDICATES = (
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "startswith",
    "matches",
    "exists",
    "in",
    "gte",
    "lte",
    "length",
)


@dataclass(frozen=True)
class Query:
    """One read of an action's outcome: ``kind`` is a QUERY_KEYS word, ``arg`` its value.

    ``token`` queries also carry ``claim`` or ``header`` (what to read in the decoded JWT).
    """

    kind: str
    arg: Any
    claim: str | None = None
    token_header: str | None = None

    def describe(self) -> str:
        if self.kind == "token":
            part = f"claim {self.claim}" if self.claim else f"header {self.token_header}"
            return (
                f"token {self.arg} {part}"
                if self.claim or self.token_header
                else f"token {self.arg}"
            )
        if self.kind in ("status", "body") and self.arg is True:
            return self.kind
        return f"{self.kind} {self.arg}"


@dataclass(frozen=True)
class Capture:
    name: str
    query: Query
    redact: bool = False


@dataclass(frozen=True)
class Expectation:
    query: Query
    predicate: str
    expected: Any
    why: str = ""

    def describe(self) -> str:
        return f"{self.query.describe()} {self.predicate} {self.expected!r}"


@dataclass(frozen=True)
class Action:
    id: str
    kind: str
    spec: Any  # the value under the kind key, before ${...} substitution
    say: str = ""
    #: Claims the default (focused) view shows for this action's tokens; the rest is --verbose.
    show: tuple[str, ...] = ()
    captures: tuple[Capture, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    check: bool = False
    #: Part of a challenge's answer: skipped by a plain ``lab step N`` (the learner's turn), run by
    #: ``lab run``, ``lab verify`` and ``lab step N --solution`` (step-format.md, "Challenges").
    solution: bool = False
    #: Shows the challenge still unsolved (a refusal the answer removes): skipped once the step's
    #: check passes, so solving by hand then ``lab step N`` passes, and ``--solution`` twice too.
    unsolved: bool = False
    line: int | None = None  # 1-based line of the action in the step file, when known


@dataclass(frozen=True)
class Step:
    number: int
    slug: str
    title: str
    path: Path
    teaches: str = ""
    actions: tuple[Action, ...] = ()
    check_actions: tuple[Action, ...] = ()
    hint: str = ""
    solution: str | None = None
    body: str = ""
    #: Capabilities the running lab must have (``lab.steps.requirements``), else a skip.
    requires: tuple[str, ...] = ()
    #: Why a step that changes no lab state has no ``--check`` (front matter
    #: ``nothing_to_check:``); ``lab step N --check`` says it instead of checking nothing.
    nothing_to_check: str = ""

    @property
    def name(self) -> str:
        return f"{self.number:02d}-{self.slug}"


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CheckResult:
    """One expectation evaluated: what was expected, what was seen, and why it matters."""

    action_id: str
    check: str  # e.g. "status equals 401"
    expected: Any
    actual: Any
    passed: bool
    why: str = ""
    predicate: str = "equals"
    query: str = ""
    error: str | None = None  # the query itself could not be evaluated

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action_id,
            "check": self.check,
            "query": self.query,
            "predicate": self.predicate,
            "expected": self.expected,
            "actual": self.actual,
            "passed": self.passed,
            "why": self.why,
            "error": self.error,
        }


@dataclass(frozen=True)
class TokenSeen:
    """A JWT issued during an action: where it was found and its decoded parts (unverified)."""

    action_id: str
    label: str  # e.g. "access_token", "id_token", "result.token"
    token: str
    header: dict[str, Any]
    claims: dict[str, Any]
    previous: str | None = None  # label of the token this one is compared with
    changes: tuple[tuple[str, Any, Any], ...] = ()  # (claim, before, after); MISSING when absent

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action_id,
            "label": self.label,
            "token": self.token,
            "header": self.header,
            "claims": self.claims,
        }


@dataclass(frozen=True)
class ActionResult:
    action_id: str
    kind: str
    say: str = ""
    exchanges: tuple[Any, ...] = ()  # lab.agent.recorder.Exchange (redacted copies)
    result: dict[str, Any] = field(default_factory=dict)  # what queries read
    tokens: tuple[TokenSeen, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    captured: dict[str, Any] = field(default_factory=dict)
    curl: str | None = None  # the request as a copy-pasteable command (secrets redacted)
    command: str | None = None  # the equivalent `lab ...` command for non-HTTP actions
    error: str | None = None  # the action could not run (connection refused, missing value...)
    duration_ms: float = 0.0
    show: tuple[str, ...] = ()  # the action's declared claims to show (Action.show)
    #: Which token each issued token was traded for, by fingerprint (issued → presented): the
    #: run model compares a token with the one it was exchanged from (ID token → ID-JAG → ...).
    derived_from: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)


@dataclass(frozen=True)
class StepResult:
    number: int
    slug: str
    title: str
    status: str  # "passed" | "failed" | "error" | "skipped" | "challenge" (solution left to do)
    duration_ms: float
    actions: tuple[ActionResult, ...] = ()
    path: str = ""
    mode: str = "run"  # "run" | "check" | "solution"
    body: str = ""  # the narrative with captured values filled in
    next_step: int | None = None
    message: str = ""  # why the step did not pass, in one line

    @property
    def checks(self) -> list[CheckResult]:
        return [c for a in self.actions for c in a.checks]

    @property
    def tokens(self) -> list[TokenSeen]:
        return [t for a in self.actions for t in a.tokens]

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def name(self) -> str:
        return f"{self.number:02d}-{self.slug}"
