"""Read ``steps/NN-slug.md`` files into :class:`Step` values.

Every problem is a :class:`StepFileError` naming the file and the field
(``steps/04-role-membership.md: actions[1] (add_member).expect[0]: unknown predicate 'eq'``),
so an instructor can fix a step without reading Python.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lab.steps.files import DEFAULT_STEPS_DIR, FILE_NAME, REPO_ROOT
from lab.steps.files import step_numbers as step_numbers  # re-exported for older callers
from lab.steps.model import (
    ACTION_KINDS,
    PREDICATES,
    QUERY_KEYS,
    Action,
    Capture,
    Expectation,
    Query,
    Step,
)

#: libyaml's loader reads the step files in a tenth of the pure-Python loader's time (every
#: `lab` command that shows steps pays it); same safe subset, same result. Pure Python only
#: where PyYAML was built without libyaml.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ACTION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_ACTION_FIELDS = {
    "id", "say", "show", "capture", "expect", "check", "solution", "unsolved", *ACTION_KINDS
}  # fmt: skip
_EXPECT_FIELDS = {"why", "claim", *QUERY_KEYS, *PREDICATES}


class StepFileError(ValueError):
    """A step file cannot be used; the message names the file and the offending field."""


def load_steps(directory: Path | None = None) -> list[Step]:
    """All ``NN-slug.md`` files of ``directory`` (default: the repo's ``steps/``), by number."""
    directory = DEFAULT_STEPS_DIR if directory is None else Path(directory)
    if not directory.is_dir():
        raise StepFileError(f"{directory}: no such steps directory")
    steps = [load_step(p) for p in sorted(directory.glob("*.md")) if FILE_NAME.match(p.name)]
    seen: dict[int, Path] = {}
    for step in steps:
        if step.number in seen:
            raise StepFileError(f"{step.path}: step {step.number} is also {seen[step.number]}")
        seen[step.number] = step.path
    return sorted(steps, key=lambda s: s.number)


def load_step(path: Path) -> Step:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StepFileError(f"{path}: cannot read: {exc.strerror}") from None
    meta, body, body_line = split_front_matter(path, text)
    return build_step(path, meta, body, body_line)


def split_front_matter(path: Path, text: str) -> tuple[dict[str, Any], str, int]:
    """(front matter as a dict, Markdown body, line number where the front matter starts)."""
    if not text.startswith("---"):
        raise StepFileError(f"{path}: a step file starts with YAML front matter ('---' line)")
    match = re.match(r"^---[ \t]*\n(.*?)^---[ \t]*\n?", text, re.DOTALL | re.MULTILINE)
    if match is None:
        raise StepFileError(f"{path}: the front matter is not closed by a '---' line")
    try:
        meta = yaml.load(match.group(1), Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 2})" if where is not None else ""
        raise StepFileError(f"{path}: front matter is not valid YAML{at}: {exc}") from None
    if not isinstance(meta, dict):
        raise StepFileError(f"{path}: front matter must be a mapping of fields")
    return meta, text[match.end() :], 2


def build_step(path: Path, meta: dict[str, Any], body: str, first_line: int = 2) -> Step:
    for required in ("step", "slug", "title", "actions"):
        if required not in meta:
            raise StepFileError(f"{path}: front matter lacks '{required}'")
    number = meta["step"]
    if not isinstance(number, int) or isinstance(number, bool):
        raise StepFileError(f"{path}: step: expected an integer, got {number!r}")
    _check_file_name(path, number, str(meta["slug"]))
    solution = meta.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise StepFileError(f"{path}: solution: expected a path to a YAML file")
    raw_actions = expand_solution_include(path, meta["actions"], solution)
    actions = parse_actions(path, raw_actions, "actions")
    if not actions:
        raise StepFileError(f"{path}: actions: a step needs at least one action")
    check_actions = parse_actions(path, meta.get("check") or [], "check")
    nothing_to_check = meta.get("nothing_to_check")
    if nothing_to_check is not None:
        if not isinstance(nothing_to_check, str) or not nothing_to_check.strip():
            raise StepFileError(f"{path}: nothing_to_check: expected a sentence saying why")
        if check_actions or any(a.check for a in actions):
            raise StepFileError(f"{path}: nothing_to_check, yet the step declares a check")
    requires = _requires(path, meta.get("requires"))
    return Step(
        number=number,
        slug=str(meta["slug"]),
        title=str(meta["title"]),
        path=path,
        teaches=str(meta.get("teaches") or ""),
        actions=actions,
        check_actions=check_actions,
        hint=str(meta.get("hint") or ""),
        solution=solution,
        body=body,
        requires=requires,
        nothing_to_check=" ".join(str(nothing_to_check or "").split()),
    )


def _requires(path: Path, raw: Any) -> tuple[str, ...]:
    from lab.steps.requirements import REQUIREMENTS

    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StepFileError(f"{path}: requires: expected a list of capability names")
    unknown = [n for n in names if n not in REQUIREMENTS]
    if unknown:
        known = ", ".join(sorted(REQUIREMENTS))
        raise StepFileError(f"{path}: requires: unknown {', '.join(unknown)} (known: {known})")
    return tuple(names)


def solution_path(step_path: Path, solution: str) -> Path:
    """Where a step's ``solution:`` file is: absolute, else from the repo root, else the step's."""
    path = Path(solution)
    if path.is_absolute():
        return path
    return REPO_ROOT / path if (REPO_ROOT / path).exists() else step_path.parent / path


def read_solution_actions(step_path: Path, solution: str) -> tuple[Path, list[Any]]:
    """The raw action list of a solution file (a YAML list, or ``{actions: [...]}``)."""
    path = solution_path(step_path, solution)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except OSError as exc:
        raise StepFileError(f"{step_path}: solution: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise StepFileError(f"{path}: not valid YAML: {exc}") from None
    raw = data.get("actions") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        raise StepFileError(f"{path}: expected a list of actions")
    return path, raw


def expand_solution_include(path: Path, raw: Any, solution: str | None) -> Any:
    """Replace an ``- solution: true`` entry (no id, no kind) by the solution file's actions.

    The answer to a challenge is then written once, in the solution file, and each of its
    actions is marked ``solution: true`` (step-format.md, "Challenges").
    """
    if not isinstance(raw, list):
        return raw  # parse_actions names the problem
    expanded: list[Any] = []
    for index, item in enumerate(raw):
        if not (isinstance(item, dict) and "solution" in item and not set(item) & _KIND_OR_ID):
            expanded.append(item)
            continue
        where = f"{path}: actions[{index}]"
        if set(item) != {"solution"} or item["solution"] is not True:
            raise StepFileError(
                f"{where}: an entry without id and kind must be exactly 'solution: true' "
                "(it stands for the actions of the step's solution file)"
            )
        if solution is None:
            raise StepFileError(
                f"{where}: 'solution: true' needs a 'solution:' file in the front matter"
            )
        _, included = read_solution_actions(path, solution)
        for entry in included:
            if isinstance(entry, dict) and "solution" in entry and "id" not in entry:
                raise StepFileError(f"{path}: solution file {solution} cannot include itself")
            expanded.append({**entry, "solution": True} if isinstance(entry, dict) else entry)
    return expanded


_KIND_OR_ID = {"id", *ACTION_KINDS}


def _check_file_name(path: Path, number: int, slug: str) -> None:
    match = FILE_NAME.match(path.name)
    if match is None:
        return  # a sample or solution file; only steps/ names are enforced
    if int(match.group(1)) != number:
        raise StepFileError(f"{path}: step: {number} does not match the file name's number")
    if match.group(2) != slug:
        raise StepFileError(f"{path}: slug: {slug!r} does not match the file name")


def parse_actions(path: Path, raw: Any, field_name: str) -> tuple[Action, ...]:
    if not isinstance(raw, list):
        raise StepFileError(f"{path}: {field_name}: expected a list of actions")
    actions: list[Action] = []
    ids: set[str] = set()
    for index, item in enumerate(raw):
        action = parse_action(path, item, f"{field_name}[{index}]")
        if action.id in ids:
            raise StepFileError(f"{path}: {field_name}[{index}].id: {action.id!r} is used twice")
        ids.add(action.id)
        actions.append(action)
    return tuple(actions)


def parse_action(path: Path, raw: Any, where: str) -> Action:
    if not isinstance(raw, dict):
        raise StepFileError(f"{path}: {where}: expected a mapping with 'id' and one action kind")
    action_id = raw.get("id")
    if not isinstance(action_id, str) or not _ACTION_ID.match(action_id):
        raise StepFileError(f"{path}: {where}.id: expected an identifier, got {action_id!r}")
    where = f"{where} ({action_id})"
    unknown = sorted(set(raw) - _ACTION_FIELDS)
    if unknown:
        raise StepFileError(
            f"{path}: {where}: unknown field(s) {', '.join(unknown)}; "
            f"an action has id, say, show, one of {', '.join(ACTION_KINDS)}, capture, expect, "
            "check, solution"
        )
    kinds = [k for k in ACTION_KINDS if k in raw]
    if len(kinds) != 1:
        raise StepFileError(
            f"{path}: {where}: needs exactly one of {', '.join(ACTION_KINDS)}, "
            f"found {kinds or 'none'}"
        )
    kind = kinds[0]
    _check_spec(path, where, kind, raw[kind])
    return Action(
        id=action_id,
        kind=kind,
        spec=raw[kind],
        say=str(raw.get("say") or ""),
        show=_show(path, where, raw.get("show")),
        captures=parse_captures(path, raw.get("capture") or {}, f"{where}.capture"),
        expectations=parse_expectations(path, raw.get("expect") or [], f"{where}.expect"),
        check=bool(raw.get("check", False)),
        solution=_flag(path, where, raw, "solution"),
        unsolved=_flag(path, where, raw, "unsolved"),
    )


def _show(path: Path, where: str, raw: Any) -> tuple[str, ...]:
    """``show: [sub, act, scope]``: the claims the default view shows for this action's tokens."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = raw.split()
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise StepFileError(f"{path}: {where}.show: expected a list of claim names, got {raw!r}")
    return tuple(raw)


def _flag(path: Path, where: str, raw: dict[str, Any], name: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise StepFileError(f"{path}: {where}.{name}: expected true or false, got {value!r}")
    return value


_REQUIRED_SPEC = {
    "request": ("method", "url"),
    "keygen": ("principal",),
    "agent": ("op",),
    "mcp": ("tool",),
    "gateway": ("tool",),
    "setting": ("part", "name", "value"),
    "providers": ("set",),
    "wait": (),  # seconds or policy, checked below
    "audit": ("op",),
}
AGENT_OPS = ("sign_in", "id_jag", "redeem", "prompt", "call_tool")
AUDIT_OPS = ("export", "verify", "tamper")
SETTING_PARTS = ("mcpserver", "docapi", "docapi_protected", "pdp", "zms", "zts", "idp")


def _check_spec(path: Path, where: str, kind: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise StepFileError(f"{path}: {where}.{kind}: expected a mapping")
    for name in _REQUIRED_SPEC[kind]:
        if name not in spec:
            raise StepFileError(f"{path}: {where}.{kind}: lacks '{name}'")
    if kind == "request":
        bodies = [b for b in ("json", "form", "body") if b in spec]
        if len(bodies) > 1:
            raise StepFileError(f"{path}: {where}.request: use only one of json, form, body")
        _check_auth(path, where, spec.get("auth"))
    if kind == "agent" and spec["op"] not in AGENT_OPS:
        raise StepFileError(
            f"{path}: {where}.agent.op: {spec['op']!r} is not one of {', '.join(AGENT_OPS)}"
        )
    if kind == "audit" and spec["op"] not in AUDIT_OPS:
        raise StepFileError(
            f"{path}: {where}.audit.op: {spec['op']!r} is not one of {', '.join(AUDIT_OPS)}"
        )
    if kind == "setting" and spec["part"] not in SETTING_PARTS:
        raise StepFileError(
            f"{path}: {where}.setting.part: {spec['part']!r} "
            f"is not one of {', '.join(SETTING_PARTS)}"
        )
    if kind == "wait":
        _check_wait(path, where, spec)
    if kind == "providers" and not isinstance(spec["set"], list):
        raise StepFileError(f"{path}: {where}.providers.set: expected a list of providers")


def _check_wait(path: Path, where: str, spec: dict[str, Any]) -> None:
    from lab.steps.actions.wait import POLICY_PARTS

    given = [name for name in ("seconds", "policy") if name in spec]
    if len(given) != 1:
        raise StepFileError(f"{path}: {where}.wait: give either seconds or policy")
    if "policy" in spec:
        parts = spec["policy"]
        if not isinstance(parts, list) or not parts or not all(p in POLICY_PARTS for p in parts):
            raise StepFileError(
                f"{path}: {where}.wait.policy: expected a list of resource servers "
                f"({', '.join(POLICY_PARTS)}), got {parts!r}"
            )


def _check_auth(path: Path, where: str, auth: Any) -> None:
    if auth is None or auth == "admin":
        return
    if isinstance(auth, dict) and len(auth) == 1:
        ((scheme, value),) = auth.items()
        if scheme in ("bearer", "client_assertion", "admin") and isinstance(value, str):
            return
        if scheme == "basic" and isinstance(value, list) and len(value) == 2:
            return
    raise StepFileError(
        f"{path}: {where}.request.auth: expected 'admin', {{bearer: TOKEN}}, "
        f"{{client_assertion: PRINCIPAL}} or {{basic: [ID, SECRET]}}, got {auth!r}"
    )


def parse_query(path: Path, raw: dict[str, Any], where: str) -> Query:
    present = [k for k in QUERY_KEYS if k in raw]
    if "token" in present:
        # Inside a token query, `header` names a JOSE header field, not a response header.
        claim, token_header = raw.get("claim"), raw.get("header")
        if (claim is None) == (token_header is None):
            raise StepFileError(
                f"{path}: {where}: a token query needs exactly one of claim or header"
            )
        return Query("token", raw["token"], claim=claim, token_header=token_header)
    if "claim" in raw:
        raise StepFileError(f"{path}: {where}: 'claim' only goes with a 'token' query")
    if len(present) != 1:
        raise StepFileError(
            f"{path}: {where}: needs exactly one query ({', '.join(QUERY_KEYS)}), "
            f"found {present or 'none'}"
        )
    return Query(present[0], raw[present[0]])


def parse_captures(path: Path, raw: Any, where: str) -> tuple[Capture, ...]:
    if not isinstance(raw, dict):
        raise StepFileError(f"{path}: {where}: expected a mapping of name: query")
    captures = []
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise StepFileError(
                f"{path}: {where}.{name}: expected a query such as {{json: $.access_token}}"
            )
        unknown = sorted(set(spec) - {*QUERY_KEYS, "claim", "redact"})
        if unknown:
            raise StepFileError(f"{path}: {where}.{name}: unknown field(s) {', '.join(unknown)}")
        query = parse_query(
            path, {k: v for k, v in spec.items() if k != "redact"}, f"{where}.{name}"
        )
        captures.append(Capture(str(name), query, bool(spec.get("redact", False))))
    return tuple(captures)


def parse_expectations(path: Path, raw: Any, where: str) -> tuple[Expectation, ...]:
    if not isinstance(raw, list):
        raise StepFileError(f"{path}: {where}: expected a list of checks")
    return tuple(parse_expectation(path, item, f"{where}[{i}]") for i, item in enumerate(raw))


def parse_expectation(path: Path, raw: Any, where: str) -> Expectation:
    if not isinstance(raw, dict):
        raise StepFileError(
            f"{path}: {where}: expected a mapping such as {{status: 401, why: ...}}"
        )
    unknown = sorted(set(raw) - _EXPECT_FIELDS)
    if unknown:
        raise StepFileError(
            f"{path}: {where}: unknown field(s) {', '.join(unknown)}; "
            f"predicates are {', '.join(PREDICATES)}"
        )
    predicates = [p for p in PREDICATES if p in raw]
    if len(predicates) > 1:
        raise StepFileError(
            f"{path}: {where}: one predicate per check, found {', '.join(predicates)}"
        )
    why = str(raw.get("why") or "")
    query_raw = {k: v for k, v in raw.items() if k not in (*PREDICATES, "why")}
    if not predicates:
        if set(query_raw) == {"status"}:
            # `- status: 401` is the one-line common case (step-format.md, "Predicates").
            return Expectation(Query("status", True), "equals", raw["status"], why)
        # A bare query asks only that the value be there.
        return Expectation(parse_query(path, query_raw, where), "exists", True, why)
    predicate = predicates[0]
    _check_predicate_value(path, where, predicate, raw[predicate])
    return Expectation(parse_query(path, query_raw, where), predicate, raw[predicate], why)


def _check_predicate_value(path: Path, where: str, predicate: str, value: Any) -> None:
    if predicate == "exists" and not isinstance(value, bool):
        raise StepFileError(f"{path}: {where}.exists: expected true or false")
    if predicate == "in" and not isinstance(value, list):
        raise StepFileError(f"{path}: {where}.in: expected a list")
    if predicate == "matches":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise StepFileError(
                f"{path}: {where}.matches: not a valid regular expression: {exc}"
            ) from None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    is_reference = isinstance(value, str) and value.startswith("${")
    if predicate in ("gte", "lte", "length") and not (is_number or is_reference):
        raise StepFileError(f"{path}: {where}.{predicate}: expected a number")


# --------------------------------------------------------------------------------------------
# Cross-step checks


def _builtin(name: str) -> bool:
    return name.startswith(("endpoints.", "keys.")) or name == "realm.client_secret"


def undefined_references(steps: list[Step]) -> list[str]:
    """``${name}`` uses that no earlier action (in this step or an earlier one) captures.

    Run on the whole sequence (``lab steps --lint``, CI): a step run alone reports the same
    problem at run time, naming the file, action and variable.
    """
    from lab.steps.values import references

    problems: list[str] = []
    known: set[str] = set()
    for step in sorted(steps, key=lambda s: s.number):
        for action in (*step.actions, *step.check_actions):
            problems += _unknown(step, action.id, references(action.spec), known)
            known |= {c.name for c in action.captures}
            used = references([e.expected for e in action.expectations])
            used |= references([e.query.arg for e in action.expectations])
            problems += _unknown(step, action.id, used, known)
        problems += _unknown(step, "body", references(step.body), known)
    return problems


def _unknown(step: Step, where: str, names: set[str], known: set[str]) -> list[str]:
    return [
        f"{step.path}: {where}: ${{{name}}} is not captured by an earlier action or step"
        for name in sorted(names)
        if not _builtin(name) and name.split(".", 1)[0] not in known
    ]
