"""Loading step files: the sample parses into typed actions; every mistake names file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.steps import StepFileError, load_step, load_steps
from lab.steps.load import DEFAULT_STEPS_DIR, undefined_references
from lab.steps.model import Action
from tests.steps.conftest import SAMPLES

HEADER = "---\nstep: 1\nslug: x\ntitle: T\n"
REQUEST_A = "actions:\n  - id: a\n    request: {method: GET, url: u}\n"


def write_step(tmp_path: Path, front: str, name: str = "01-x.md", body: str = "Body\n") -> Path:
    path = tmp_path / name
    path.write_text(f"{HEADER}{front}---\n{body}", encoding="utf-8")
    return path


def test_sample_step_parses_actions_captures_and_expectations() -> None:
    step = load_step(SAMPLES / "01-sample.md")
    assert (step.number, step.slug, step.name) == (1, "sample", "01-sample")
    assert [a.kind for a in step.actions] == ["request", "keygen", "request", "request"]
    first = step.actions[0]
    assert first.captures[0].name == "challenge" and first.captures[0].query.kind == "header"
    status = first.expectations[0]
    assert (status.query.kind, status.predicate, status.expected) == ("status", "equals", 401)
    token_check = step.actions[2].expectations[1]
    assert (token_check.query.kind, token_check.query.token_header, token_check.expected) == (
        "token",
        "typ",
        "at+jwt",
    )
    assert "{{ challenge }}" in step.body


def test_default_directory_is_the_repository_steps_folder() -> None:
    assert Path(__file__).resolve().parents[2] / "steps" == DEFAULT_STEPS_DIR


def test_load_steps_orders_by_number_and_ignores_other_files(tmp_path: Path) -> None:
    write_step(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n")
    (tmp_path / "02-y.md").write_text(
        "---\nstep: 2\nslug: y\ntitle: Y\nactions:\n  - {id: a, wait: {seconds: 0}}\n---\n",
        encoding="utf-8",
    )
    (tmp_path / "README.md").write_text("not a step", encoding="utf-8")
    assert [s.number for s in load_steps(tmp_path)] == [1, 2]


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("actions:\n  - {id: a}\n", "actions[0] (a): needs exactly one of request"),
        (
            "actions:\n  - {id: a, wait: {seconds: 1}, keygen: {principal: p}}\n",
            "found ['keygen', 'wait']",
        ),
        ("actions:\n  - {id: a, wiat: {seconds: 1}}\n", "unknown field(s) wiat"),
        ("actions:\n  - {id: a, request: {method: GET}}\n", "actions[0] (a).request: lacks 'url'"),
        (
            REQUEST_A + "    expect:\n      - {status: true, eq: 1}\n",
            "actions[0] (a).expect[0]: unknown field(s) eq",
        ),
        (
            REQUEST_A + "    expect:\n      - {token: $.t, equals: 1}\n",
            "a token query needs exactly one of claim or header",
        ),
        (
            REQUEST_A + "    expect:\n      - {status: true, json: $.a, equals: 1}\n",
            "needs exactly one query",
        ),
        (
            "actions:\n  - {id: a, wait: {seconds: 0}}\n  - {id: a, wait: {seconds: 0}}\n",
            "actions[1].id: 'a' is used twice",
        ),
        ("actions:\n  - {id: a, agent: {op: fly}}\n", "agent.op: 'fly' is not one of"),
        (
            "actions:\n  - {id: a, request: {method: GET, url: u, auth: {token: x}}}\n",
            "request.auth: expected 'admin'",
        ),
        (
            "actions:\n  - id: a\n    wait: {seconds: 0}\n    expect:\n"
            "      - {result: x, matches: '('}\n",
            "not a valid regular expression",
        ),
        ("actions: []\n", "a step needs at least one action"),
        ("actions:\n  - {id: a, wait: {}}\n", "wait: give either seconds or policy"),
        (
            "actions:\n  - {id: a, wait: {seconds: 1, policy: [mcp]}}\n",
            "wait: give either seconds or policy",
        ),
        (
            "actions:\n  - {id: a, wait: {policy: [pdp]}}\n",
            "wait.policy: expected a list of resource servers (docapi, mcp), got ['pdp']",
        ),
        (REQUEST_A + "nothing_to_check: ''\n", "nothing_to_check: expected a sentence"),
        (
            REQUEST_A + "    check: true\nnothing_to_check: reads only\n",
            "nothing_to_check, yet the step declares a check",
        ),
    ],
)
def test_mistakes_are_reported_with_file_and_field(
    tmp_path: Path, front: str, message: str
) -> None:
    path = write_step(tmp_path, front)
    with pytest.raises(StepFileError) as caught:
        load_step(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_front_matter_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "01-x.md"
    path.write_text("# just markdown\n", encoding="utf-8")
    with pytest.raises(StepFileError, match="starts with YAML front matter"):
        load_step(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write_step(tmp_path, "actions: [\n")
    with pytest.raises(StepFileError, match=r"front matter is not valid YAML \(line \d+\)"):
        load_step(path)


def test_slug_must_match_the_file_name(tmp_path: Path) -> None:
    path = write_step(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n", name="01-other.md")
    with pytest.raises(StepFileError, match="slug: 'x' does not match the file name"):
        load_step(path)


def test_two_files_with_one_number_are_refused(tmp_path: Path) -> None:
    write_step(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n")
    (tmp_path / "01-z.md").write_text(
        "---\nstep: 1\nslug: z\ntitle: Z\nactions:\n  - {id: a, wait: {seconds: 0}}\n---\n",
        encoding="utf-8",
    )
    with pytest.raises(StepFileError, match="step 1 is also"):
        load_steps(tmp_path)


def test_bare_query_means_exists_and_check_flag_is_kept(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        REQUEST_A + "    check: true\n    expect:\n      - header: Location\n",
    )
    action = load_step(path).actions[0]
    assert action.check is True
    assert (action.expectations[0].predicate, action.expectations[0].expected) == ("exists", True)


def test_repository_steps_all_load() -> None:
    steps = load_steps()
    assert steps, "the repository has step files"
    assert [s.number for s in steps] == sorted({s.number for s in steps})


def test_undefined_references_are_found_across_steps(tmp_path: Path) -> None:
    write_step(
        tmp_path,
        "actions:\n  - id: a\n    wait: {seconds: 0}\n"
        "    capture:\n      token: {result: seconds}\n",
    )
    (tmp_path / "02-y.md").write_text(
        "---\nstep: 2\nslug: y\ntitle: Y\nactions:\n"
        "  - id: use\n    request: {method: GET, url: '${endpoints.zms}/${token}/${typo}'}\n"
        "---\nSaw {{ token }} and {{ never }}.\n",
        encoding="utf-8",
    )
    problems = undefined_references(load_steps(tmp_path))
    assert len(problems) == 2
    assert "02-y.md: use: ${typo} is not captured" in problems[0]
    assert "02-y.md: body: ${never}" in problems[1]


def test_repository_steps_reference_only_captured_values() -> None:
    assert undefined_references(load_steps()) == []


def test_every_step_file_reads_the_same_with_the_c_loader_as_with_pure_python() -> None:
    import os
    import re

    import yaml

    from lab.steps.load import DEFAULT_STEPS_DIR, SAFE_LOADER

    if SAFE_LOADER is yaml.SafeLoader:
        if os.environ.get("CI") == "true":
            pytest.fail("PyYAML lacks libyaml on CI; install a PyYAML wheel built with it")
        pytest.skip("PyYAML was built without libyaml: only the pure-Python loader is used")
    files = sorted(DEFAULT_STEPS_DIR.glob("[0-9][0-9]-*.md"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        match = re.match(r"^---[ \t]*\n(.*?)^---[ \t]*\n?", text, re.DOTALL | re.MULTILINE)
        assert match is not None, path
        front = match.group(1)
        assert yaml.load(front, Loader=SAFE_LOADER) == yaml.safe_load(front), path


#: Hosts whose POSTs issue tokens (nothing stored); any other write changes lab state.
TOKEN_ENDPOINTS = ("${endpoints.zts_token}", "${endpoints.idp_token}")


def _changes_state(action: Action) -> bool:
    kind, spec = action.kind, action.spec
    if kind in ("setting", "providers", "keygen"):
        return True
    if kind == "agent":
        return spec.get("op") == "prompt" and "create" in str(spec.get("text", ""))
    if kind != "request":
        return False
    method = str(spec.get("method", "GET")).upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    return not (method == "POST" and str(spec.get("url", "")).startswith(TOKEN_ENDPOINTS))


def test_every_step_has_a_check_or_says_why_it_changes_nothing() -> None:
    """Issue #17: every step that changes state has a --check; the others say why not."""
    for step in load_steps():
        checked = bool(step.check_actions) or any(a.check for a in step.actions)
        writes = [a.id for a in step.actions if _changes_state(a)]
        assert checked or step.nothing_to_check, f"step {step.number}: no check and no reason"
        if step.nothing_to_check:
            assert not writes, f"step {step.number} says it changes nothing, yet runs {writes}"


def test_only_the_last_step_tells_the_learner_the_lab_is_over() -> None:
    # Step 17 once closed with "That is the whole lab", and steps 18-20 followed it.
    import re

    steps = load_steps()
    for step in steps[:-1]:
        closing = " ".join(step.body.split())
        said = re.search(r"(that is the whole lab|you have finished the lab)", closing, re.I)
        assert said is None, f"step {step.number} says {said and said[0]!r}"
