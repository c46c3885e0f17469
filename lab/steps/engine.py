"""Run a step: substitute values, perform each action, capture, check each expectation.

An expectation that fails is a result (✗ with expected and actual), never an exception; an
action that cannot run (connection refused, a missing ``${value}``) ends the step with a
message naming the step file, the action and the cause.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lab.agent.recorder import Exchange
from lab.config import Endpoints, Settings
from lab.oauth.jose import (
    JwtValidationError,
    token_fingerprint,
    unverified_claims,
    unverified_header,
)
from lab.steps.actions import module_for
from lab.steps.actions.base import ActionError, Produced
from lab.steps.captures import load_captures, save_captures
from lab.steps.load import (
    FILE_NAME,
    StepFileError,
    parse_actions,
    read_solution_actions,
)
from lab.steps.model import (
    Action,
    ActionResult,
    CheckResult,
    Expectation,
    Step,
    StepResult,
    TokenSeen,
)
from lab.steps.predicates import check as check_predicate
from lab.steps.queries import QueryError, evaluate
from lab.steps.redact import redact_text, redact_value
from lab.steps.values import MissingValue, Scope, fill_body, substitute

log = logging.getLogger("lab.steps")
MISSING = "(absent)"


@dataclass
class RunContext:
    """Everything a step run needs; captures carry over from step to step."""

    settings: Settings
    # None means settings.endpoints (filled in by __post_init__, so never None afterwards).
    endpoints: Endpoints = None  # type: ignore[assignment]
    backend: Any = None  # lab.backends Backend (providers actions need it)
    captures: dict[str, Any] | None = None  # default: $LAB_HOME/captures.json
    persist: bool = True  # write captures back to $LAB_HOME/captures.json
    timeout_s: float = 15.0
    redacted_names: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    previous_token: TokenSeen | None = None

    def __post_init__(self) -> None:
        if self.endpoints is None:
            self.endpoints = self.settings.endpoints
        if self.captures is None:
            values, redacted = load_captures(self.settings) if self.persist else ({}, set())
            self.captures = values
            self.redacted_names |= redacted
        self.secrets |= {str(self.captures[n]) for n in self.redacted_names if n in self.captures}

    @property
    def values(self) -> dict[str, Any]:
        assert self.captures is not None
        return self.captures

    def scope(self) -> Scope:
        assert self.endpoints is not None
        return Scope(self.endpoints, self.settings, self.values, self.secrets)

    def redact(self, value: Any) -> Any:
        return redact_value(value, self.secrets)

    def display(self, value: Any) -> Any:
        """``redact``, and paths under $LAB_HOME written as ``$LAB_HOME/...`` (stable, shorter)."""
        homes = {str(self.settings.home.resolve()), str(self.settings.home)}
        text = json.dumps(self.redact(value), default=str)
        for home in sorted(homes, key=len, reverse=True):
            if home not in (".", ""):
                text = text.replace(json.dumps(home)[1:-1], "$LAB_HOME")
        return json.loads(text)

    def remember(self, name: str, value: Any, redact: bool) -> None:
        self.values[name] = value
        if redact:
            self.redacted_names.add(name)
            self.secrets.add(str(value))
        if self.persist:
            save_captures(self.settings, self.values, self.redacted_names)


def run_step(step: Step, ctx: RunContext, solutions: bool = True) -> StepResult:
    """Run the step's actions. ``solutions=False`` is the learner's plain ``lab step N``.

    Then the step stops before its first ``solution: true`` action and ends as a "challenge"
    (the learner's turn: not a failure). ``lab run``, ``lab verify``, ``lab reset`` and
    ``--solution`` run every action (the default), so a challenge step passes end to end.
    """
    if step.requires:
        from lab.steps.requirements import unmet

        reason = unmet(step.requires, ctx.endpoints)
        if reason is not None:
            return _not_run(step, "skipped", "run", reason)
    if not has_solution_actions(step):
        return run_actions(step, step.actions, ctx, mode="run")
    if already_solved(step, ctx):
        # The learner solved it (by hand or with --solution): the "still refused" actions no
        # longer hold, and the answer is in place; run the rest, which shows it working.
        actions = tuple(a for a in step.actions if not a.unsolved and not a.solution)
        return run_actions(step, actions, ctx, mode="run")
    if solutions:
        return run_actions(step, step.actions, ctx, mode="run")
    first = next(i for i, a in enumerate(step.actions) if a.solution)
    result = run_actions(step, step.actions[:first], ctx, mode="run")
    if result.status != "passed":
        return result
    return dataclasses.replace(
        result, status="challenge", next_step=None, message=challenge_message(step)
    )


def has_solution_actions(step: Step) -> bool:
    return any(a.solution for a in step.actions)


def already_solved(step: Step, ctx: RunContext) -> bool:
    """Does the step's ``--check`` pass now? (Run quietly: captures stay as they are.)"""
    actions = step.check_actions or tuple(a for a in step.actions if a.check)
    if not actions or not any(a.unsolved for a in step.actions):
        return False
    probe = dataclasses.replace(ctx, captures=dict(ctx.values), persist=False)
    return run_actions(step, actions, probe, mode="check").passed


def challenge_message(step: Step) -> str:
    n = step.number
    # One command per line: a terminal never breaks a command in the middle.
    return (
        f"Your turn: step {n} stops here, before its answer. Fix the configuration yourself.\n"
        f"  check your work:  lab step {n} --check\n"
        f"  a nudge:          lab step {n} --hint\n"
        f"  the answer:       lab step {n} --solution (applies it and runs the rest)"
    )


def check_step(step: Step, ctx: RunContext) -> StepResult:
    """Verify the learner's state: the ``check`` actions, else those marked ``check: true``."""
    actions = step.check_actions or tuple(a for a in step.actions if a.check)
    if not actions:
        # A step that changes no lab state says why (its `nothing_to_check:`); a status of
        # "skipped" keeps the exit code 0, and the terminal says "nothing to check", not "0/0".
        reason = step.nothing_to_check or f"step {step.number} declares no check."
        return _not_run(step, "skipped", "check", f"Nothing to check. {reason}")
    return run_actions(step, actions, ctx, mode="check")


def apply_solution(step: Step, ctx: RunContext) -> StepResult:
    """Apply the step's answer.

    A step with ``solution: true`` actions runs whole, answer included, so what follows the
    answer (and the narrative's ``${...}`` values) is shown too. Otherwise the step's solution
    file (a YAML list of actions, or ``{actions: [...]}``) is applied alone.
    """
    if has_solution_actions(step):
        # Applying the answer again is harmless (ZMS writes are idempotent PUTs); what no longer
        # holds once solved is the "still refused" part, so it is left out then.
        solved = already_solved(step, ctx)
        actions = tuple(a for a in step.actions if not (solved and a.unsolved))
        return run_actions(step, actions, ctx, mode="solution")
    if not step.solution:
        return _not_run(step, "error", "solution", f"step {step.number} has no solution")
    try:
        actions = load_solution(step)
    except StepFileError as exc:
        return _not_run(step, "error", "solution", str(exc))
    return run_actions(step, actions, ctx, mode="solution")


def load_solution(step: Step) -> tuple[Action, ...]:
    assert step.solution is not None
    path, raw = read_solution_actions(step.path, step.solution)
    return parse_actions(path, raw, "actions")


def hint_text(step: Step) -> str:
    return (
        step.hint.strip()
        or f"Step {step.number} has no hint. Read the step again: lab step {step.number}"
    )


# --------------------------------------------------------------------------------------------


def run_actions(step: Step, actions: tuple[Action, ...], ctx: RunContext, mode: str) -> StepResult:
    started = time.perf_counter()
    results: list[ActionResult] = []
    for action in actions:
        result = run_action(step, action, ctx)
        results.append(result)
        if result.error is not None:
            break  # later actions build on this one; running them would only add noise
    errors = [r for r in results if r.error is not None]
    failed = [c for r in results for c in r.checks if not c.passed]
    status = "error" if errors else "failed" if failed else "passed"
    message = _summary(step, errors, failed)
    return StepResult(
        number=step.number,
        slug=step.slug,
        title=step.title,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        actions=tuple(results),
        path=str(step.path),
        mode=mode,
        body=render_body(step, ctx),
        next_step=next_step_after(step),
        message=message,
    )


def run_action(step: Step, action: Action, ctx: RunContext) -> ActionResult:
    started = time.perf_counter()
    where = f"{step.path}: action {action.id}"
    base = ActionResult(
        action_id=action.id, kind=action.kind, say=ctx.redact(action.say), show=action.show
    )
    try:
        spec = substitute(action.spec, ctx.scope(), where)
        produced = module_for(action.kind).run(spec, ctx)
    except MissingValue as exc:
        return dataclasses.replace(base, error=str(exc), duration_ms=_ms(started))
    except ActionError as exc:
        return dataclasses.replace(base, error=f"{where}: {exc}", duration_ms=_ms(started))
    except Exception as exc:  # noqa: BLE001 - a harness boundary: report, never crash the run
        log.exception("action %s of %s failed", action.id, step.path)
        return dataclasses.replace(
            base, error=f"{where}: {type(exc).__name__}: {exc}", duration_ms=_ms(started)
        )
    ctx.secrets |= produced.secrets
    capture_checks = run_captures(action, produced, ctx)
    checks = capture_checks + [
        run_expectation(action, e, produced, ctx, where) for e in action.expectations
    ]
    return dataclasses.replace(
        base,
        exchanges=tuple(_redacted_exchange(e, ctx) for e in produced.exchanges),
        derived_from=derivations(produced.exchanges),
        result=ctx.display(dict(produced.outcome.result)),
        tokens=tuple(decode_tokens(action.id, produced, ctx)),
        checks=tuple(checks),
        captured={
            c.name: ("***" if c.redact else ctx.redact(ctx.values.get(c.name)))
            for c in action.captures
            if c.name in ctx.values
        },
        curl=redact_text(produced.curl, ctx.secrets) if produced.curl else None,
        command=ctx.display(produced.command) if produced.command else None,
        duration_ms=_ms(started),
    )


def run_captures(action: Action, produced: Produced, ctx: RunContext) -> list[CheckResult]:
    """Store each capture; one that finds nothing is a failed check (later actions need it)."""
    problems: list[CheckResult] = []
    for capture in action.captures:
        error: str | None = None
        try:
            query = dataclasses.replace(
                capture.query, arg=substitute(capture.query.arg, ctx.scope())
            )
            found, value = evaluate(query, produced.outcome, ctx.values)
        except (QueryError, MissingValue) as exc:
            found, value, error = False, None, str(exc)
        if found and value is not None:
            ctx.remember(capture.name, value, capture.redact)
            continue
        problems.append(
            CheckResult(
                action_id=action.id,
                check=f"capture {capture.name} from {capture.query.describe()}",
                expected="a value",
                actual=None,
                passed=False,
                why=f"later actions use ${{{capture.name}}}",
                predicate="exists",
                query=capture.query.describe(),
                error=error,
            )
        )
    return problems


def run_expectation(
    action: Action, expectation: Expectation, produced: Produced, ctx: RunContext, where: str
) -> CheckResult:
    try:
        expected = substitute(expectation.expected, ctx.scope(), where)
    except MissingValue as exc:
        return _check(action, expectation, expectation.expected, None, False, ctx, str(exc))
    try:
        query = dataclasses.replace(
            expectation.query, arg=substitute(expectation.query.arg, ctx.scope(), where)
        )
        found, actual = evaluate(query, produced.outcome, ctx.values)
    except MissingValue as exc:
        return _check(action, expectation, expected, None, False, ctx, str(exc))
    except QueryError as exc:
        return _check(action, expectation, expected, None, False, ctx, str(exc))
    passed = check_predicate(expectation.predicate, found, actual, expected)
    return _check(action, expectation, expected, actual if found else None, passed, ctx, None)


def _check(
    action: Action,
    e: Expectation,
    expected: Any,
    actual: Any,
    passed: bool,
    ctx: RunContext,
    error: str | None,
) -> CheckResult:
    return CheckResult(
        action_id=action.id,
        check=f"{e.query.describe()} {e.predicate} {json.dumps(ctx.redact(expected), default=str)}",
        expected=ctx.redact(expected),
        actual=ctx.redact(actual),
        passed=passed,
        why=e.why,
        predicate=e.predicate,
        query=e.query.describe(),
        error=error,
    )


def decode_tokens(action_id: str, produced: Produced, ctx: RunContext) -> list[TokenSeen]:
    """Each JWT issued by the action, decoded (unverified, for display), diffed with the last."""
    seen: list[TokenSeen] = []
    for label, token in produced.tokens:
        if token in ctx.secrets:
            continue
        try:
            header, claims = unverified_header(token), unverified_claims(token)
        except JwtValidationError:
            continue
        previous = ctx.previous_token
        token_seen = TokenSeen(
            action_id=action_id,
            label=label,
            token=token,
            header=header,
            claims=claims,
            previous=f"{previous.action_id}.{previous.label}" if previous else None,
            changes=claim_changes(previous.claims, claims) if previous else (),
        )
        ctx.previous_token = token_seen
        seen.append(token_seen)
    return seen


def claim_changes(
    before: dict[str, Any], after: dict[str, Any]
) -> tuple[tuple[str, Any, Any], ...]:
    names = list(before) + [n for n in after if n not in before]
    return tuple(
        (n, before.get(n, MISSING), after.get(n, MISSING))
        for n in names
        if before.get(n, MISSING) != after.get(n, MISSING)
    )


def render_body(step: Step, ctx: RunContext) -> str:
    scope = ctx.scope()

    def lookup(name: str) -> Any:
        return ctx.redact(scope.lookup(name))

    return redact_text(fill_body(step.body, lookup), ctx.secrets)


#: Where a token request presents the token it trades: RFC 8693 ``subject_token``, RFC 7523
#: ``assertion`` (the ID-JAG). A token issued in answer was "exchanged from" that one.
PRESENTED = ("request.form.subject_token", "request.form.assertion")


def derivations(exchanges: list[Any]) -> dict[str, str]:
    """Issued token → the token presented to get it, both by fingerprint, read from the raw
    tokens the recorder kept aside (the redacted copies below drop them)."""
    derived: dict[str, str] = {}
    for exchange in exchanges:
        captured = getattr(exchange, "tokens", None) or []
        presented = [t for t in captured if t.where in PRESENTED]
        if len(presented) != 1:
            continue
        for issued in captured:
            if issued.where.startswith("response."):
                derived[token_fingerprint(issued.value)] = token_fingerprint(presented[0].value)
    return derived


def _redacted_exchange(exchange: Any, ctx: RunContext) -> Any:
    if not isinstance(exchange, Exchange):
        return exchange
    return dataclasses.replace(
        exchange,
        url=redact_text(exchange.url, ctx.secrets),
        request_headers={
            k: redact_text(v, ctx.secrets) for k, v in exchange.request_headers.items()
        },
        request_body=redact_text(exchange.request_body, ctx.secrets),
        response_headers={
            k: redact_text(v, ctx.secrets) for k, v in exchange.response_headers.items()
        },
        response_body=redact_text(exchange.response_body, ctx.secrets),
        tokens=[],
    )


def _summary(step: Step, errors: list[ActionResult], failed: list[CheckResult]) -> str:
    if errors:
        return errors[0].error or ""
    if failed:
        first = failed[0]
        expected, actual = (json.dumps(v, default=str) for v in (first.expected, first.actual))
        where = f"{step.path}: action {first.action_id}"
        return f"{where}: {first.check} — expected {expected}, got {actual}"
    return ""


def _not_run(step: Step, status: str, mode: str, message: str) -> StepResult:
    return StepResult(
        step.number,
        step.slug,
        step.title,
        status,
        0.0,
        (),
        str(step.path),
        mode,
        "",
        next_step_after(step),
        message,
    )


def next_step_after(step: Step) -> int | None:
    """The number of the next step file beside this one, or None after the last step.

    Read from the file names only (``NN-slug.md``): cheap, and a gap in the numbering is skipped.
    """
    try:
        names = [p.name for p in step.path.parent.iterdir()]
    except OSError:
        return None
    later = [
        int(m.group(1)) for m in map(FILE_NAME.match, names) if m and int(m.group(1)) > step.number
    ]
    return min(later, default=None)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
