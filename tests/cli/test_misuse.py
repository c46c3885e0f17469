"""The CLI misused as learners misuse it: empty settings, unwritable paths, wrong arguments.

Each case answers with one line naming the cause and the command to run next, the right exit
code, and nothing written where the learner did not ask.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.config import Settings
from tests.cli.conftest import Lab


def test_empty_lab_host_and_lab_home_mean_the_safe_defaults(lab: Lab) -> None:
    # `LAB_HOST=` once made uvicorn bind every interface and print URLs like `http://:9090`;
    # `LAB_HOME=` put the stores, keys and logs in whatever folder the learner stood in.
    settings = Settings.from_env({"LAB_HOST": "", "LAB_HOME": "", "LAB_LOG_LEVEL": ""})
    assert settings.host == "127.0.0.1"
    assert settings.home == Path(".lab")
    assert settings.log_level == "info"
    assert Settings.from_env({"LAB_BACKEND": ""}).backend == "embedded"
    lab.env["LAB_HOST"] = ""
    result = lab.invoke("up", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "bind 127.0.0.1," in result.stdout
    assert "http://:" not in result.stdout


def test_empty_lab_home_keeps_the_learners_folder_clean(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "somewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    lab.env["LAB_HOME"] = ""
    result = lab.invoke("keygen", "human.someone", "--print", "path")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(Path(".lab") / "keys" / "human.someone.pem")
    assert sorted(p.name for p in here.iterdir()) == [".lab"]


def test_verify_refuses_an_unwritable_report_path_before_running_anything(
    lab: Lab, tmp_path: Path
) -> None:
    # It used to run every step, then lose the report to a bare "No such file or directory".
    # Nothing runs here (the lab is down), so reaching the path check first is the proof.
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for option, path in (("--junit", a_file / "x.xml"), ("--json", tmp_path)):
        result = lab.invoke("verify", option, str(path))
        assert result.exit_code == 2, result.output
        said = " ".join(result.stderr.split())
        assert f"error: {option} {path}: cannot write there" in said
        assert "or - for stdout" in said
        assert "not running" not in said
    assert a_file.read_text() == ""


def test_verify_probe_of_a_good_report_path_leaves_no_file_when_the_run_cannot_start(
    lab: Lab, tmp_path: Path
) -> None:
    report = tmp_path / "reports" / "verify.json"
    result = lab.invoke("verify", "--json", str(report))
    assert result.exit_code == 3  # the lab is down: the check passed, the run could not start
    assert "not running" in result.stderr
    assert not report.exists()


def test_an_unwritable_lab_home_names_the_path_and_the_variable(lab: Lab, tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    lab.env["LAB_HOME"] = str(a_file / "home")
    result = lab.invoke("keygen", "human.someone")
    assert result.exit_code == 3, result.output
    said = " ".join(result.stderr.split())
    assert f"error: Not a directory: {a_file / 'home'}" in said, said
    assert f"fix: point LAB_HOME at a folder you can write (now {a_file / 'home'})" in said


def test_providers_set_on_a_stopped_lab_changes_nothing(lab: Lab) -> None:
    # The file used to be written before the "not running" refusal, so the next `lab up`
    # trusted an issuer the learner had been told was not set.
    before = lab.invoke("providers", "show")
    trusted = '[{"issuerUri": "http://127.0.0.1:1/realms/x", "jwksUri": "http://127.0.0.1:1/j"}]'
    result = lab.invoke("providers", "set", trusted)
    assert result.exit_code == 3, result.output
    assert "the embedded backend is not running" in result.stderr
    after = lab.invoke("providers", "show")
    assert after.exit_code == 0
    assert after.stdout == before.stdout
    assert "realms/x" not in after.stdout


def test_ctrl_c_during_a_plain_reset_exits_130_like_every_other_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lab.cli import reset_run

    def interrupted(to: int | None, json_output: bool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(reset_run, "reset_lab", interrupted)
    assert reset_run.plain_reset(["reset", "--to", "3"]) == 130


def test_the_waiting_message_names_the_holder_on_one_line(tmp_path: Path) -> None:
    from lab.cli.lock import _holder

    path = tmp_path / "lab.lock"
    path.write_text("4242 lab step 13\nstep 13\n")  # the holder, then what it is doing
    assert _holder(path) == "pid 4242: lab step 13"


def test_a_lab_running_from_a_folder_above_is_named_instead_of_not_running(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cd steps` then `lab step 3`: with LAB_HOME unset, ./.lab is steps/.lab, and the learner
    # was told to `lab up` a lab that runs, from the checkout's root.
    root = tmp_path / "checkout"
    (root / ".lab").mkdir(parents=True)
    (root / ".lab" / "runtime.json").write_text("{}")
    (root / "steps").mkdir()
    monkeypatch.chdir(root / "steps")
    del lab.env["LAB_HOME"]

    where = " ".join(lab.invoke().output.split())
    assert f"No lab runs from here, but one runs from {root}." in where
    assert f"Next: cd {root}" in where
    status = lab.invoke("status")
    assert status.exit_code == 3
    assert f"the lab runs from {root}: `cd {root}`" in " ".join(status.output.split())
    step = lab.invoke("step", "3")
    assert step.exit_code == 3
    said = " ".join(step.stderr.split())
    assert "error: the embedded backend is not running" in said
    assert f"fix: the lab runs from {root}: `cd {root}` (or set LAB_HOME={root / '.lab'})" in said

    monkeypatch.chdir(tmp_path)  # nothing above: the usual advice
    assert "Next: lab up" in lab.invoke().output


def test_where_says_step_1_passed_not_steps_1_to_1() -> None:
    from lab.cli.where import next_command

    one = {1: {"status": "passed"}}
    assert next_command(True, True, one, [1, 2, 3]) == (
        "The lab is up; step 1 passed.",
        "lab step 2",
    )
    two = {1: {"status": "passed"}, 2: {"status": "passed"}}
    assert next_command(True, True, two, [1, 2, 3])[0] == "The lab is up; steps 1–2 passed."


@pytest.mark.parametrize("command", ["sign-in", "run"])
def test_an_unknown_sign_in_method_is_a_usage_error_not_an_unexpected_one(
    lab: Lab, command: str
) -> None:
    # It reached the agent as a ValueError: "unexpected error ... report it", exit 1.
    args = ["agent", command, "--method", "bogus"] + (["get docs"] if command == "run" else [])
    result = lab.invoke(*args)
    assert result.exit_code == 2, result.output
    assert "'bogus' is not one of: code, password, browser" in " ".join(result.output.split())
    assert "unexpected error" not in result.output


@pytest.mark.parametrize("principal", ["../../../outside", "a/b", "", ".hidden"])
def test_a_principal_is_a_name_never_a_path_out_of_lab_home(
    lab: Lab, tmp_path: Path, principal: str
) -> None:
    # `lab keygen ../../../x` wrote a private key outside LAB_HOME.
    for args in (("keygen", principal), ("sign-assertion", principal, "--aud", "http://x")):
        result = lab.invoke(*args)
        assert result.exit_code == 2, result.output
        assert f"{principal!r} is not a principal name" in " ".join(result.output.split())
    written = [p for p in tmp_path.rglob("*.pem")]
    assert written == []
    with pytest.raises(ValueError, match="is not a principal name"):
        Settings.from_env({"LAB_HOME": str(tmp_path)}).key_file(principal)


def test_reset_hard_leaves_nothing_of_the_last_run_for_lab_up_to_start_from(lab: Lab) -> None:
    # It removed the stores only: `lab up` then said "all 20 steps passed", and the MCP server
    # kept step 8's require_access, so steps 6 and 7 failed on the "baseline".
    from lab.state import record_result

    settings = Settings.from_env(lab.env)
    settings.home.mkdir(parents=True)
    for number in (1, 2, 3):
        record_result(settings, number, f"s{number}", "passed", 1.0)
    leftovers = {
        "mcpserver-settings.json": '{"require_access": true}',
        "providers.json": '[{"issuerUri": "http://127.0.0.1:1/realms/idjag"}]',
        "captures.json": '{"values": {"id_token": "x"}}',
    }
    for name, text in leftovers.items():
        (settings.home / name).write_text(text)

    result = lab.invoke("reset", "--hard")
    assert result.exit_code == 0, result.output
    for name in leftovers:
        assert not (settings.home / name).exists(), name
    statuses = {s["status"] for s in json.loads(lab.invoke("steps", "--json").stdout)["steps"]}
    assert statuses == {"not run"}

    both = lab.invoke("reset", "--hard", "--to", "3")
    assert both.exit_code == 2, both.output
    assert "--hard starts from the baseline" in " ".join(both.stderr.split())


def test_a_broken_step_file_is_named_with_its_fix_not_reported_as_a_bug(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An instructor's edit gone wrong came back as "unexpected error: StepFileError ... report it".
    import lab.steps as steps_package
    from lab.steps.load import StepFileError

    def broken(directory: Path | None = None) -> list[object]:
        raise StepFileError("steps/21-x.md: front matter is not valid YAML (line 8)\n  in <string>")

    monkeypatch.setattr(steps_package, "load_steps", broken)
    result = lab.invoke("steps")
    assert result.exit_code == 3, result.output
    said = result.stderr
    assert "error: steps/21-x.md: front matter is not valid YAML (line 8); in <string>" in said
    assert "fix: fix that step file (its format: docs/reference/step-format.md)" in said
    assert "unexpected error" not in said


def test_too_many_room_learners_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("room", "up", "--learners", "1000", "--dry-run")
    assert result.exit_code == 2, result.output  # was 3, "environment"
    assert "1000 is more than one kind node holds: choose 1 to" in " ".join(result.output.split())
