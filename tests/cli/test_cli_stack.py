"""CLI commands against a running embedded lab (one per module), success and failure for each."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.oauth.jose import unverified_claims
from lab.steps import load_steps
from tests.cli.conftest import Lab
from tests.stack import Stack, embedded_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("cli") / "home") as running:
        yield running


@pytest.fixture
def lab(stack: Stack) -> Lab:
    return Lab(stack.env)


@pytest.fixture
def fresh(lab: Lab) -> Lab:
    """The lab at its baseline."""
    result = lab.invoke("reset")
    assert result.exit_code == 0, result.output
    return lab


def test_up_again_keeps_the_running_lab_and_prints_its_endpoints(lab: Lab, stack: Stack) -> None:
    pid = json.loads(lab.invoke("status", "--json").stdout)["pid"]
    result = lab.invoke("up", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["endpoints"] == stack.endpoints.as_dict()
    assert json.loads(lab.invoke("status", "--json").stdout)["pid"] == pid


def test_up_prints_a_table_of_endpoints_and_the_next_command(lab: Lab, stack: Stack) -> None:
    result = lab.invoke("up")
    assert result.exit_code == 0
    assert stack.endpoints.zts in result.output
    assert "Next: lab step 1" in result.output


def test_status_reports_every_part_healthy(lab: Lab) -> None:
    result = lab.invoke("status", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["healthy"] is True
    assert {p["name"] for p in data["parts"]} == {
        "idp",
        "zms",
        "zts",
        "docapi_protected",
        "docapi_unprotected",
        "mcp",
    }


def test_logs_show_the_runtime_log(lab: Lab) -> None:
    result = lab.invoke("logs", "embedded", "--lines", "200")
    assert result.exit_code == 0
    assert "ready to serve" in result.output


def test_lab_alone_points_at_step_1_after_a_reset(fresh: Lab) -> None:
    result = fresh.invoke()
    assert result.exit_code == 0
    assert "Next: lab step 1" in result.output


def test_reset_json_reports_the_baseline(fresh: Lab) -> None:
    result = fresh.invoke("reset", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ready_for_step"] == 1
    assert data["restored_from"] == 0


def test_reset_to_a_step_that_does_not_exist_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("reset", "--to", "99")
    assert result.exit_code == 2
    assert "there is no step 99" in result.output


def _same_output(result: Any) -> tuple[int, str, str]:
    """A process's outcome with its durations blanked (they differ from run to run)."""
    return (
        result.returncode,
        result.stdout,
        re.sub(r"in \d+ ms", "in N ms", result.stderr),
    )


def test_plain_reset_says_what_typers_reset_says(stack: Stack) -> None:
    # `lab reset [--to N]` runs without Typer (lab.cli.reset_run); `--to=N` still goes
    # through Typer to the same function: the two must be indistinguishable.
    plain, typer_path = stack.lab("reset"), stack.lab("reset", "--to=1")
    assert plain.returncode == 0, plain.stderr
    assert "Back to the baseline in" in plain.stderr
    assert _same_output(plain) == _same_output(typer_path)
    stack.lab("reset", "--to=3")  # replays steps 1-2 once if needed: checkpoints for the next
    plain, typer_path = stack.lab("reset", "--to", "3"), stack.lab("reset", "--to=3")
    assert "Restored the checkpoint after step 2 in" in plain.stderr
    assert _same_output(plain) == _same_output(typer_path)
    plain, typer_path = stack.lab("reset", "--to", "99"), stack.lab("reset", "--to=99")
    assert plain.returncode == 2 and "there is no step 99" in plain.stderr
    assert _same_output(plain) == _same_output(typer_path)


def test_step_1_passes_and_is_recorded(fresh: Lab) -> None:
    result = fresh.invoke("step", "1")
    assert result.exit_code == 0, result.output
    steps = json.loads(fresh.invoke("steps", "--json").stdout)["steps"]
    assert steps[0]["status"] == "passed"
    assert "Next: lab step 2" in fresh.invoke().output


def test_a_step_run_out_of_order_fails_with_exit_1(fresh: Lab) -> None:
    result = fresh.invoke("step", "4")  # needs the domain (step 2) and the identity (step 3)
    assert result.exit_code == 1
    steps = json.loads(fresh.invoke("steps", "--json").stdout)["steps"]
    assert next(s for s in steps if s["number"] == 4)["status"] in ("failed", "error")


def test_step_manual_prints_curl_with_signed_assertions(fresh: Lab) -> None:
    result = fresh.invoke("step", "2", "--manual")
    assert result.exit_code == 0
    assert "curl" in result.output
    assert "lab sign-assertion user.athenz_admin" in result.output


def test_run_resets_then_runs_a_range(lab: Lab) -> None:
    result = lab.invoke("run", "--from", "1", "--to", "2")
    assert result.exit_code == 0, result.output
    steps = {
        s["number"]: s["status"] for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]
    }
    assert steps[1] == steps[2] == "passed"


def test_reset_to_fast_forwards_and_policy_show_lists_the_role(lab: Lab) -> None:
    result = lab.invoke("reset", "--to", "3", "--json")
    assert result.exit_code == 0, result.output
    shown = lab.invoke("policy", "show", "api", "--json")
    assert shown.exit_code == 0
    domain = json.loads(shown.stdout)["domains"][0]
    assert "api:role.docs-getter" in [r["name"] for r in domain["roles"]]
    assertions = [a for p in domain["policies"] for a in p["assertions"]]
    assert any(a["action"] == "get" and a["resource"] == "api:docs" for a in assertions)


def test_policy_show_of_a_missing_domain_exits_1(fresh: Lab) -> None:
    result = fresh.invoke("policy", "show", "nosuchdomain")
    assert result.exit_code == 1
    assert "the PDP has no domain 'nosuchdomain'" in result.output


def test_decode_verifies_a_pdp_token_and_catches_a_forged_one(lab: Lab, stack: Stack) -> None:
    assert lab.invoke("reset", "--to", "5").exit_code == 0
    token = _issued_token(stack, issuer=stack.endpoints.zts)
    good = lab.invoke("decode", token, "--json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["signature"]["valid"] is True
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    bad = lab.invoke("decode", forged, "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["signature"]["valid"] is False


def test_audit_verify_finds_an_intact_chain(lab: Lab) -> None:
    assert lab.invoke("reset", "--to", "5").exit_code == 0
    result = lab.invoke("audit", "--verify", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["count"] >= 1


def test_audit_verify_reads_the_trail_page_by_page(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.cli import audit

    assert lab.invoke("reset", "--to", "5").exit_code == 0
    # --verify and --export take the whole trail, every run included: compare with --all.
    whole = json.loads(lab.invoke("audit", "--json", "--all").stdout)
    assert whole["count"] >= 2
    monkeypatch.setattr(audit, "PAGE", 1)  # a page per record: several pages even here
    export = tmp_path / "trail.json"
    result = lab.invoke("audit", "--verify", "--export", str(export))
    assert result.exit_code == 0, result.output
    assert f"the chain of {whole['count']} records is intact" in result.output
    assert json.loads(export.read_text())["records"] == whole["records"]


def test_mcp_call_without_a_token_is_refused_with_401(fresh: Lab) -> None:
    result = fresh.invoke("mcp", "call", "list_docs", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["http_status"] == 401


def test_agent_stops_at_the_id_jag_before_the_idp_is_trusted(fresh: Lab) -> None:
    result = fresh.invoke("agent", "get docs", "--json", "--method", "password")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["stopped_at"] == "id_jag"


def test_providers_set_and_show(fresh: Lab, stack: Stack) -> None:
    providers = [
        {
            "issuerUri": stack.endpoints.idp_issuer,
            "jwksUri": stack.endpoints.idp_jwks,
            "principalTemplate": "human.{preferred_username}",
        }
    ]
    assert fresh.invoke("providers", "set", json.dumps(providers)).exit_code == 0
    assert json.loads(fresh.invoke("providers", "show").stdout) == providers


def test_verify_runs_every_step_and_writes_json_and_junit(lab: Lab, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = lab.invoke("verify", "--json", "-", "--junit", str(junit))
    records = json.loads(result.stdout)  # stdout carries only the JSON report
    steps = load_steps()
    assert [r["number"] for r in records] == [s.number for s in steps]
    for record in records:
        assert {"number", "slug", "title", "status", "duration_ms", "checks", "tokens"} <= set(
            record
        )
        for check in record["checks"]:
            assert {"expected", "actual", "passed"} <= set(check)
    failed = {r["number"]: r["message"] for r in records if r["status"] != "passed"}
    assert failed == {}
    assert result.exit_code == 0
    assert any(record["tokens"] for record in records)  # the raw tokens issued are reported
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == str(len(steps))


def test_verify_exits_1_when_a_step_fails(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of step 1 that expects a status the document API never answers.
    step = load_steps()[0]
    broken = tmp_path / "steps"
    broken.mkdir()
    text = Path(step.path).read_text()
    assert "status: 401" in text
    (broken / Path(step.path).name).write_text(text.replace("status: 401", "status: 418", 1))
    monkeypatch.setattr("lab.steps.load_steps", lambda directory=None: load_steps(broken))

    result = lab.invoke("verify")

    assert result.exit_code == 1
    assert "0/1 steps passed; failed: 1" in " ".join(result.output.split())


def _issued_token(stack: Stack, issuer: str) -> str:
    """A JWT the PDP issued during earlier steps, from the engine's captures."""
    data = json.loads((stack.home / "captures.json").read_text())
    for value in data.get("values", {}).values():
        if isinstance(value, str) and value.count(".") == 2:
            try:
                if unverified_claims(value).get("iss") == issuer:
                    return value
            except Exception:  # noqa: BLE001 - not every dotted string is a JWT
                continue
    raise AssertionError("no PDP token among the captures")


def test_challenge_step_stops_for_the_learner_then_solution_completes_it(lab: Lab) -> None:
    assert lab.invoke("reset", "--to", "14").exit_code == 0
    plain = lab.invoke("step", "14")
    assert plain.exit_code == 0, plain.output  # the learner's turn is not a failure
    text = " ".join(plain.output.split())
    assert "CHALLENGE" in text
    assert "lab step 14 --solution" in text
    # The answer's first action (create_poster_role, shown by what it does) was not applied.
    assert "Create the role docs-poster" not in plain.output
    assert "Next: lab step 15" not in plain.output
    steps = {s["number"]: s for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]}
    assert steps[14]["status"] == "challenge"
    assert "your turn" in lab.invoke("steps").output
    assert "lab step 14 --check" in lab.invoke().output

    solved = lab.invoke("step", "14", "--solution")
    assert solved.exit_code == 0, solved.output
    assert "Create the role docs-poster" in solved.output
    assert "${created_id}" not in solved.output  # the narrative's values are filled in
    assert "Next: lab step 15" in solved.output
    steps = {s["number"]: s for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]}
    assert steps[14]["status"] == "passed"


def test_run_applies_the_challenge_answer_and_the_last_step_finishes_the_lab(lab: Lab) -> None:
    result = lab.invoke("run", "--from", "14")
    assert result.exit_code == 0, result.output
    assert "Create the role docs-poster" in result.output  # the answer was applied
    last = load_steps()[-1].number
    assert f"Step {last} ·" in result.output  # the run went on to the last step ...
    assert f"Next: lab step {last + 1}" not in result.output  # ... and stopped there
    assert "You have finished the lab" in result.output


def test_ctrl_c_in_the_middle_of_a_step_points_the_next_command_at_a_reset(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import lab.steps.engine as engine

    real_run_step = engine.run_step

    def interrupted_after_the_revocation(step: Any, context: Any, solutions: bool = True) -> Any:
        # Step 13 removes the learner from docs-getter, then Ctrl-C arrives: half the step done.
        cut = [a.id for a in step.actions].index("remove_member") + 1
        real_run_step(dataclasses.replace(step, actions=step.actions[:cut]), context, solutions)
        raise KeyboardInterrupt

    assert lab.invoke("reset", "--to", "13").exit_code == 0
    monkeypatch.setattr(engine, "run_step", interrupted_after_the_revocation)
    stopped = lab.invoke("step", "13")
    monkeypatch.setattr(engine, "run_step", real_run_step)
    assert stopped.exit_code == 130
    said = " ".join(stopped.stderr.split())
    assert "Interrupted in the middle of step 13" in said, stopped.stderr
    assert "Next: lab reset --to 13 && lab step 13" in said
    steps = {s["number"]: s for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]}
    assert steps[13]["status"] == "interrupted"
    where = lab.invoke()
    assert "step 13 was interrupted part-way" in where.output
    assert "Next: lab reset --to 13" in where.output

    # Run again over the half-done state, the step fails for that reason alone, and says so.
    again = lab.invoke("step", "13")
    assert again.exit_code == 1, again.output
    assert "the last run of step 13 was interrupted part-way" in " ".join(again.stderr.split())
    # The advice works: reset to the step, then it passes.
    assert lab.invoke("reset", "--to", "13").exit_code == 0
    assert lab.invoke("step", "13").exit_code == 0


def test_ctrl_c_during_a_reset_leaves_no_stale_passes_and_points_back_at_the_reset(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.state import StateClient

    assert lab.invoke("reset", "--to", "15").exit_code == 0  # steps 1-14 shown as passed

    def interrupted(self: StateClient, snapshot: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(StateClient, "restore", interrupted)
    stopped = lab.invoke("reset", "--to", "13")
    monkeypatch.undo()
    assert stopped.exit_code == 130
    said = " ".join(stopped.stderr.split())
    assert "Interrupted while resetting to step 13: the lab is part-way there." in said, said
    assert "Next: lab reset --to 13" in said
    statuses = {
        s["number"]: s["status"] for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]
    }
    assert statuses[13] == "interrupted"
    assert statuses[14] == "not run"  # the half-undone step 14 is no longer shown as passed
    assert "the reset to step 13 was interrupted part-way" in " ".join(lab.invoke().output.split())
    assert lab.invoke("reset", "--to", "13").exit_code == 0
    assert "Next: lab step 13" in lab.invoke().output


def test_kind_down_and_up_leave_a_running_embedded_lab_alone(lab: Lab, stack: Stack) -> None:
    # `lab --backend kind down` used to delete runtime.json whatever it recorded: the embedded
    # lab went on running, `lab down` could no longer see it, `lab up` met its own ports busy.
    pid = json.loads(lab.invoke("status", "--json").stdout)["pid"]
    down = lab.invoke("--backend", "kind", "down")
    assert down.exit_code == 0, down.output
    after = json.loads(lab.invoke("status", "--json").stdout)
    assert after["running"] is True and after["pid"] == pid
    # Starting kind over it would overwrite that record too: refused before anything starts.
    up = lab.invoke("--backend", "kind", "up")
    assert up.exit_code == 3, up.output
    said = " ".join(up.stderr.split())
    assert "the embedded backend is running from this LAB_HOME" in said
    assert "stop it first: `lab down`, then `lab --backend kind up`" in said
    assert json.loads(lab.invoke("status", "--json").stdout)["pid"] == pid


def test_a_step_killed_part_way_is_found_by_the_next_command_and_reset_to(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kill -9, or the terminal closed, gives no chance to record anything: the lock file says
    # which step its holder was in, and is emptied only by a holder that lets go cleanly.
    import lab.steps.engine as engine

    real_run_step = engine.run_step
    seen: list[str] = []

    def watched(step: Any, context: Any, solutions: bool = True) -> Any:
        seen.append((lab.home / "lab.lock").read_text())
        return real_run_step(step, context, solutions)

    assert lab.invoke("reset", "--to", "12").exit_code == 0
    monkeypatch.setattr(engine, "run_step", watched)
    assert lab.invoke("step", "12").exit_code == 0
    monkeypatch.undo()
    assert seen and seen[0].splitlines()[-1] == "step 12"  # said while the step ran
    assert (lab.home / "lab.lock").read_text() == ""  # let go cleanly: nothing half-done

    # What a killed `lab step 12` leaves: the lock free, its file still naming the step.
    (lab.home / "lab.lock").write_text("999999 lab step 12\nstep 12\n")
    where = " ".join(lab.invoke().output.split())
    assert "step 12 was interrupted part-way" in where and "Next: lab reset --to 12" in where
    statuses = {
        s["number"]: s["status"] for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]
    }
    assert statuses[12] == "interrupted"
    assert (lab.home / "lab.lock").read_text() == ""

    (lab.home / "lab.lock").write_text("999999 lab reset --to 9\nreset 9\n")
    assert "the reset to step 9 was interrupted part-way" in " ".join(lab.invoke().output.split())
    assert lab.invoke("reset", "--to", "9").exit_code == 0
    assert "Next: lab step 9" in lab.invoke().output


def test_a_busy_port_held_by_a_lab_runtime_names_it_and_how_to_stop_it(
    lab: Lab, stack: Stack, tmp_path: Path
) -> None:
    # "stop whatever holds it" left a learner stuck when the holder was a lab `lab down`
    # could not see: another checkout's, or their own after runtime.json was lost.
    pid = json.loads(lab.invoke("status", "--json").stdout)["pid"]
    other = Lab({**stack.env, "LAB_HOME": str(tmp_path / "other")})
    beside = other.invoke("up")
    assert beside.exit_code == 3, beside.output
    said = " ".join(beside.stderr.split())
    assert "is already in use" in said
    assert f"a lab from another LAB_HOME holds it: `LAB_HOME={stack.home} lab down`" in said

    runtime = stack.home / "runtime.json"
    kept = runtime.read_text()
    runtime.unlink()
    try:
        lost = lab.invoke("up")
    finally:
        runtime.write_text(kept)
    assert lost.exit_code == 3, lost.output
    said = " ".join(lost.stderr.split())
    assert f"it is this LAB_HOME's own lab (pid {pid}), whose runtime.json is gone" in said
    assert f"stop it with `kill {pid}`, then `lab up`" in said
    assert json.loads(lab.invoke("status", "--json").stdout)["pid"] == pid


def test_room_join_refuses_to_take_over_a_running_embedded_lab(
    lab: Lab, stack: Stack, tmp_path: Path
) -> None:
    # Joining writes the admin key and runtime.json of LAB_HOME: the running lab would be
    # orphaned, and its PDP would no longer trust the admin key the CLI signs with.
    from dataclasses import replace

    from lab.backends import room
    from lab.backends.kind import ensure_local_keys
    from lab.config import ADMIN_PRINCIPAL, Settings

    workshop = room.Room(Settings.from_env({"LAB_HOME": str(tmp_path / "i")}), context="kind-x")
    learner = room.Learner(3)
    ensure_local_keys(replace(workshop.settings, home=workshop.learner_home(learner)).keys_dir)
    bundle = workshop.write_join_bundle(learner)
    runtime = (stack.home / "runtime.json").read_text()
    admin_key = Settings.from_env(stack.env).key_file(ADMIN_PRINCIPAL).read_bytes()

    joined = lab.invoke("room", "join", str(bundle))
    assert joined.exit_code == 3, joined.output
    said = " ".join(joined.stderr.split())
    assert "the embedded backend is running from this LAB_HOME" in said
    assert f"stop it first: `lab down`, then `lab room join {bundle}`" in said
    assert (stack.home / "runtime.json").read_text() == runtime
    assert Settings.from_env(stack.env).key_file(ADMIN_PRINCIPAL).read_bytes() == admin_key
    assert lab.invoke("status").exit_code == 0


def test_up_again_with_other_ports_says_the_running_lab_keeps_its_own(
    lab: Lab, stack: Stack
) -> None:
    # "set LAB_ZTS_PORT to another port, then lab up" on a lab still up changed nothing, and
    # said nothing: the same table came back.
    same = lab.invoke("up")
    assert same.exit_code == 0 and "keeps the addresses" not in same.stderr
    moved = Lab({**stack.env, "LAB_ZTS_PORT": "1"}).invoke("up")
    assert moved.exit_code == 0, moved.output
    said = " ".join(moved.stderr.split())
    assert "note: the running lab keeps the addresses it started with" in said
    assert f"{stack.endpoints.zts} (the settings now say http://127.0.0.1:1/zts/v1)" in said
    assert "To move it: lab down && lab up" in said
    assert stack.endpoints.zts in moved.stdout  # the table shows where it really is


def test_providers_the_pdp_refuses_leave_the_file_as_it_was(fresh: Lab, stack: Stack) -> None:
    # The file was written before the PDP refused it: `providers show` (and the next start)
    # then held a list the running PDP had rejected.
    trusted = [{"issuerUri": stack.endpoints.idp_issuer, "jwksUri": stack.endpoints.idp_jwks}]
    assert fresh.invoke("providers", "set", json.dumps(trusted)).exit_code == 0
    refused = fresh.invoke("providers", "set", '[{"issuerUri": 5}]')
    assert refused.exit_code == 3, refused.output
    said = " ".join(refused.stderr.split())
    assert "the PDP refused the providers (400): " in said
    assert "needs issuerUri and jwksUri" in said and '{"error"' not in said
    assert json.loads(fresh.invoke("providers", "show").stdout) == trusted
