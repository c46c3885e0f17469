"""The GitHub workflow for a runner with Docker (.github/workflows/kind.yml), checked offline:
it parses, it validates against the github-workflows schema check-jsonschema vendors, actionlint
accepts it when installed, and its jobs run what the kind backend and the room promise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.backends import kind_plan as plan
from lab.backends import versions

WORKFLOW = plan.REPO_ROOT / ".github" / "workflows" / "kind.yml"


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def runs(job: str) -> list[str]:
    return [step.get("run", "") for step in workflow()["jobs"][job]["steps"]]


def step_named(job: str, prefix: str) -> dict[str, Any]:
    steps = workflow()["jobs"][job]["steps"]
    found: dict[str, Any] = next(s for s in steps if s.get("name", "").startswith(prefix))
    return found


def test_workflow_validates_against_the_vendored_github_workflows_schema() -> None:
    if shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("check-jsonschema is a dev dependency: `pip install -e '.[dev]'`")
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    tool = str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    if found:
        return found
    go_bin = Path(os.environ.get("GOPATH", str(Path.home() / "go"))) / "bin" / "actionlint"
    return str(go_bin) if go_bin.is_file() else None


def test_actionlint_accepts_the_workflow_when_installed() -> None:
    tool = _actionlint()
    if tool is None:
        # Optional: a Go tool `.ci/run` does not install (the schema check above always runs).
        pytest.skip("actionlint is not installed (go install github.com/rhysd/actionlint/cmd/...)")
    # shellcheck/pyflakes integrations are off: they are other tools, maybe absent here.
    result = subprocess.run(
        [tool, "-shellcheck=", "-pyflakes=", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("job", ["kind", "room"])
def test_every_job_installs_the_pinned_kind_and_kubectl(job: str) -> None:
    env = workflow()["jobs"][job]["env"]
    assert env["KIND_VERSION"] == versions.KIND_VERSION
    assert env["KUBECTL_VERSION"] == versions.KUBECTL_VERSION


def test_kind_job_brings_the_lab_up_and_verifies_every_step() -> None:
    text = "\n".join(runs("kind"))
    assert ".venv/bin/lab --backend kind up" in text
    assert ".venv/bin/lab --backend kind verify" in text
    assert step_named("kind", "Tear down")["if"] == "always()"


def test_room_job_runs_three_learners_on_a_non_loopback_address() -> None:
    listen = step_named("room", "Choose the listen address")["run"]
    assert "hostname -I" in listen and "LISTEN=" in listen
    up = step_named("room", "Bring up a 3-learner room")["run"]
    assert up.strip() == '.venv/bin/lab room up --learners 3 --listen "$LISTEN"'


def test_room_job_verifies_one_learner_through_their_join_bundle_in_their_own_home() -> None:
    learner = step_named("room", "Learner 02 joins")
    assert learner["env"]["LAB_HOME"] == "${{ env.LEARNER_HOME }}"  # not the instructor's home
    lines = [line.strip() for line in learner["run"].splitlines() if line.strip()]
    assert lines[0].startswith(".venv/bin/lab room join ")
    assert lines[0].endswith('/room/learner-02/join.json"')
    assert lines[1].startswith(".venv/bin/lab --backend kind verify")


def test_room_job_checks_the_status_feed_resets_one_learner_and_tears_down() -> None:
    status = step_named("room", "The instructor's status")["run"]
    assert 'rows["learner-02"]["last_verified_step"] is not None' in status
    assert 'rows["learner-01"]["last_verified_step"] is None' in status
    assert ".venv/bin/lab room reset 3" in step_named("room", "Reset learner 03")["run"]
    down = step_named("room", "Tear the room down")
    assert (down["run"], down["if"]) == (".venv/bin/lab room down", "always()")
