"""Challenges (``solution: true`` actions) and the "Next" step after a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.render.terminal import step_result_text
from lab.steps import load_step, load_steps
from lab.steps.engine import RunContext, apply_solution, next_step_after, run_step
from lab.steps.load import StepFileError, read_solution_actions
from tests.steps.fake_lab import FakeLab
from tests.steps.test_engine import step_file

pytestmark = pytest.mark.usefixtures("fake_lab")

FIX = "{id: fix, setting: {part: mcpserver, name: require_access, value: false}, solution: true}"
CHALLENGE = f"""
actions:
  - {{id: before, wait: {{seconds: 0}}}}
  - {FIX}
  - id: after
    wait: {{seconds: 0}}
    capture:
      waited: {{result: seconds}}
"""
BODY = "You waited ${waited} seconds."


def test_plain_run_stops_before_the_answer_and_is_a_challenge(
    tmp_path: Path, ctx: RunContext, fake_lab: FakeLab
) -> None:
    step = load_step(step_file(tmp_path, CHALLENGE, body=BODY))
    result = run_step(step, ctx, solutions=False)
    assert result.status == "challenge"
    assert not result.passed
    assert [a.action_id for a in result.actions] == ["before"]
    assert fake_lab.settings_seen == []  # the answer was not applied
    assert "lab step 1 --solution" in result.message
    text = step_result_text(result)
    assert "CHALLENGE" in text
    assert "lab step 1 --check" in text
    assert "Next:" not in text


def test_a_failure_before_the_answer_stays_a_failure(tmp_path: Path, ctx: RunContext) -> None:
    front = (
        "actions:\n"
        "  - {id: before, wait: {seconds: 0}, expect: [{result: seconds, equals: 5}]}\n"
        f"  - {FIX}\n"
    )
    result = run_step(load_step(step_file(tmp_path, front)), ctx, solutions=False)
    assert result.status == "failed"


def test_full_run_applies_the_answer_and_goes_on(
    tmp_path: Path, ctx: RunContext, fake_lab: FakeLab
) -> None:
    result = run_step(load_step(step_file(tmp_path, CHALLENGE, body=BODY)), ctx)
    assert result.status == "passed"
    assert [a.action_id for a in result.actions] == ["before", "fix", "after"]
    assert fake_lab.settings_seen == [{"require_access": False}]


def test_solution_runs_the_whole_challenge_and_fills_the_body(
    tmp_path: Path, ctx: RunContext, fake_lab: FakeLab
) -> None:
    result = apply_solution(load_step(step_file(tmp_path, CHALLENGE, body=BODY)), ctx)
    assert (result.status, result.mode) == ("passed", "solution")
    assert [a.action_id for a in result.actions] == ["before", "fix", "after"]
    assert fake_lab.settings_seen == [{"require_access": False}]
    assert result.body == "You waited 0.0 seconds."
    assert "${" not in step_result_text(result)


def test_solution_entry_includes_the_solution_file_marked(
    tmp_path: Path, ctx: RunContext, fake_lab: FakeLab
) -> None:
    answer = tmp_path / "answer.yaml"
    answer.write_text(
        "- id: fix\n  setting: {part: mcpserver, name: require_access, value: false}\n",
        encoding="utf-8",
    )
    front = (
        f"solution: {answer}\n"
        "actions:\n"
        "  - {id: before, wait: {seconds: 0}}\n"
        "  - solution: true\n"
        "  - {id: after, wait: {seconds: 0}}\n"
    )
    step = load_step(step_file(tmp_path, front))
    assert [(a.id, a.solution) for a in step.actions] == [
        ("before", False),
        ("fix", True),
        ("after", False),
    ]
    assert run_step(step, ctx, solutions=False).status == "challenge"
    assert fake_lab.settings_seen == []
    assert run_step(step, ctx).status == "passed"
    assert fake_lab.settings_seen == [{"require_access": False}]


@pytest.mark.parametrize(
    ("front", "message"),
    [
        (
            "actions:\n  - solution: true\n",
            "needs a 'solution:' file",
        ),
        (
            "solution: x.yaml\nactions:\n  - {solution: true, say: hi}\n",
            "must be exactly 'solution: true'",
        ),
        (
            "actions:\n  - {id: a, wait: {seconds: 0}, solution: yes please}\n",
            "solution: expected true or false",
        ),
    ],
)
def test_solution_marker_mistakes_are_reported(tmp_path: Path, front: str, message: str) -> None:
    with pytest.raises(StepFileError, match=message):
        load_step(step_file(tmp_path, front))


def test_next_step_is_the_next_existing_file(tmp_path: Path, ctx: RunContext) -> None:
    first = step_file(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n", 3, "c")
    last = step_file(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n", 7, "g")
    assert run_step(load_step(first), ctx).next_step == 7
    result = run_step(load_step(last), ctx)
    assert result.next_step is None
    text = step_result_text(result)
    assert "You have finished the lab" in text
    assert "Next:" not in text


def test_repository_last_step_has_no_next_step() -> None:
    steps = load_steps()
    assert next_step_after(steps[-1]) is None
    assert [next_step_after(s) for s in steps[:-1]] == [s.number for s in steps[1:]]


def test_step_14_takes_its_answer_from_the_solution_file() -> None:
    step = next(s for s in load_steps() if s.number == 14)
    assert step.solution is not None
    _, raw = read_solution_actions(step.path, step.solution)
    marked = [a for a in step.actions if a.solution]
    assert [a.id for a in marked] == [item["id"] for item in raw]
    assert len(marked) == 6
    # Every write still expects 204 from ZMS: the answer's checks are not loosened.
    for action in marked:
        assert [(e.query.kind, e.predicate, e.expected) for e in action.expectations] == [
            ("status", "equals", 204)
        ]
    # The refusals come before the answer, the successful create after it.
    ids = [a.id for a in step.actions]
    assert ids.index("create_refused") < ids.index(marked[0].id) < ids.index("create_allowed")


def test_a_challenge_is_skipped_not_failed_in_junit(tmp_path: Path, ctx: RunContext) -> None:
    import xml.etree.ElementTree as ET

    from lab.render.report import to_junit

    result = run_step(load_step(step_file(tmp_path, CHALLENGE)), ctx, solutions=False)
    suite = ET.fromstring(to_junit([result])).find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "0", "1")
    assert suite.find("testcase/skipped") is not None
