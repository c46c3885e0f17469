"""CLI commands that need no running lab: each with a success and a failure, exit codes checked."""

from __future__ import annotations

import json
import stat
import time

import jwt
import pytest

from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, load_public_key
from tests.cli.conftest import Lab


def test_help_lists_the_exit_codes_and_every_command_group(lab: Lab) -> None:
    result = lab.invoke("--help")
    assert result.exit_code == 0
    assert "Exit codes: 0 passed, 1 a check failed, 2 usage error, 3 environment" in " ".join(
        result.output.split()
    )
    for command in ("up", "down", "status", "steps", "step", "verify", "reset", "decode", "agent"):
        assert f"  {command} " in result.output


def test_unknown_backend_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("--backend", "docker", "status")
    assert result.exit_code == 2
    assert "is not one of: embedded, kind" in result.output


def test_lab_alone_says_the_lab_is_down_and_to_run_lab_up(lab: Lab) -> None:
    result = lab.invoke()
    assert result.exit_code == 0
    assert "The lab is not running." in result.output
    assert "Next: lab up" in result.output


def test_status_of_a_lab_that_is_not_up_exits_3(lab: Lab) -> None:
    result = lab.invoke("status", "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data == {
        "backend": "embedded",
        "running": False,
        "healthy": False,
        "pid": None,
        "detail": "not started",
        "parts": [],
    }


def test_down_when_nothing_runs_is_fine(lab: Lab) -> None:
    result = lab.invoke("down")
    assert result.exit_code == 0
    assert "stopped" in result.output


def test_commands_needing_the_lab_fail_with_environment_code_and_a_fix(lab: Lab) -> None:
    result = lab.invoke("reset")
    assert result.exit_code == 3
    assert "error: the embedded backend is not running" in result.output
    assert "fix: start it with `lab up`" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_real_exception_instead_of_one_sentence(lab: Lab) -> None:
    from lab.backends.base import BackendNotRunning

    with pytest.raises(BackendNotRunning):
        lab.invoke("--debug", "reset")


def test_logs_of_an_unknown_part_names_the_choices(lab: Lab) -> None:
    result = lab.invoke("logs", "nonsense")
    assert result.exit_code == 2  # a wrong argument is a usage error, as the help's codes say
    assert "there is no part called 'nonsense'" in result.output
    assert "mcp" in result.output


def test_keygen_creates_a_0600_key_and_prints_its_facts(lab: Lab) -> None:
    result = lab.invoke("keygen", "human.idjag-learner")
    assert result.exit_code == 0
    facts = json.loads(result.stdout)
    assert facts["principal"] == "human.idjag-learner"
    key_path = lab.home / "keys" / "human.idjag-learner.pem"
    assert facts["path"] == str(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    again = lab.invoke("keygen", "human.idjag-learner", "--print", "kid")
    assert again.stdout.strip() == facts["kid"]  # idempotent: the same key


def test_keygen_rejects_an_unknown_field(lab: Lab) -> None:
    result = lab.invoke("keygen", "human.x", "--print", "secret")
    assert result.exit_code == 2
    assert "--print 'secret' is not one of kid, public_ybase64, path" in result.output


def test_sign_assertion_prints_a_jwt_signed_by_the_principal(lab: Lab) -> None:
    lab.invoke("keygen", "user.athenz_admin")
    result = lab.invoke("sign-assertion", "user.athenz_admin", "--aud", "http://127.0.0.1:1/zms/v1")
    assert result.exit_code == 0
    token = result.stdout.strip()
    public = load_public_key((lab.home / "keys" / "user.athenz_admin.pub.pem").read_bytes())
    claims = jwt.decode(token, public, algorithms=["ES256"], audience="http://127.0.0.1:1/zms/v1")
    assert claims["iss"] == claims["sub"] == "user.athenz_admin"
    assert claims["exp"] - claims["iat"] <= 120


def test_sign_assertion_without_a_key_says_how_to_get_one(lab: Lab) -> None:
    result = lab.invoke("sign-assertion", "human.nobody", "--aud", "http://x")
    assert result.exit_code == 3
    assert "there is no key for human.nobody" in result.output


def test_decode_shows_claims_and_expiry_of_a_foreign_token(lab: Lab) -> None:
    key = SigningKey.load_or_create(lab.home / "keys" / "someone.pem")
    token = make_admin_assertion("someone", key, "http://example")
    result = lab.invoke("decode", token, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["claims"]["sub"] == "someone"
    assert data["header"]["alg"] == "ES256"
    assert data["signature"]["checked"] is False  # not a lab issuer: nothing to check against
    assert data["expiry"]["expired"] is False


def test_decode_of_an_expired_token_exits_1(lab: Lab) -> None:
    key = SigningKey.load_or_create(lab.home / "keys" / "someone.pem")
    old = key.sign({"iss": "someone", "sub": "someone", "iat": 1, "exp": int(time.time()) - 60})
    result = lab.invoke("decode", old)
    assert result.exit_code == 1
    assert "expired" in result.output


def test_decode_of_garbage_is_one_sentence(lab: Lab) -> None:
    result = lab.invoke("decode", "not-a-token")
    assert result.exit_code == 2  # not a token at all is a usage error
    assert "this is not a JWT" in result.output
    assert "Traceback" not in result.output


def test_mcp_call_rejects_an_argument_without_equals(lab: Lab) -> None:
    result = lab.invoke("mcp", "call", "get_doc", "--arg", "id")
    assert result.exit_code == 2
    assert "--arg 'id' is not key=value" in result.output


def test_providers_set_rejects_non_json(lab: Lab) -> None:
    result = lab.invoke("providers", "set", "{not json")
    assert result.exit_code == 2
    assert "the providers are not JSON" in result.output


def test_steps_lists_every_step_as_not_run(lab: Lab) -> None:
    result = lab.invoke("steps", "--json")
    assert result.exit_code == 0
    steps = json.loads(result.stdout)["steps"]
    assert steps, "steps/ holds the step files"
    assert [s["number"] for s in steps] == sorted(s["number"] for s in steps)
    assert {s["status"] for s in steps} == {"not run"}
    assert steps[0]["slug"] == "document-api"


def test_step_that_does_not_exist_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("step", "99")
    assert result.exit_code == 2
    assert "there is no step 99" in result.output


def test_step_with_two_modes_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("step", "1", "--manual", "--check")
    assert result.exit_code == 2
    assert "choose only one of" in result.output


def test_step_hint_prints_the_challenge_hint(lab: Lab) -> None:
    steps = json.loads(lab.invoke("steps", "--json").stdout)["steps"]
    challenge = next(s for s in steps if "challenge" in s["slug"])
    result = lab.invoke("step", str(challenge["number"]), "--hint")
    assert result.exit_code == 0
    assert f"Hint for step {challenge['number']}" in result.output


def test_audit_tamper_then_verify_detects_the_edit(lab: Lab, tmp_path) -> None:
    from lab.pdp.audit import verify_chain  # the PDP's verifier: build a valid chain with it

    records = _valid_chain(3)
    assert verify_chain(records) == []
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"records": records}))
    ok = lab.invoke("audit", str(path), "--verify", "--json")
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["valid"] is True
    assert (
        lab.invoke(
            "audit", str(path), "--tamper", "--record", "1", "--set", "decision=allow"
        ).exit_code
        == 0
    )
    broken = lab.invoke("audit", str(path), "--verify", "--json")
    assert broken.exit_code == 1
    report = json.loads(broken.stdout)
    assert report["valid"] is False
    assert report["problems"]


def test_audit_verify_streams_an_export_and_still_finds_an_edit(lab: Lab, tmp_path) -> None:
    records = _valid_chain(50)
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"records": records}, indent=2))  # any JSON shape is read
    intact = lab.invoke("audit", str(path), "--verify", "--last", "3")
    assert intact.exit_code == 0
    assert "the chain of 50 records is intact" in intact.output
    # --tamper rewrites the file in the export's one-record-per-line form, read line by line.
    edit = lab.invoke("audit", str(path), "--tamper", "--record", "10", "--set", "decision=allow")
    assert edit.exit_code == 0
    assert path.read_text().startswith('{"records": [\n{')
    assert json.loads(path.read_text())["records"][10]["decision"] == "allow"  # still JSON
    broken = lab.invoke("audit", str(path), "--verify", "--last", "3")
    assert broken.exit_code == 1
    assert "record 11: hash does not match its content" in broken.output


def test_audit_verify_finds_a_dropped_first_record(lab: Lab, tmp_path) -> None:
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"records": _valid_chain(5)[1:]}))
    result = lab.invoke("audit", str(path), "--verify", "--json")
    assert result.exit_code == 1
    assert any("prev_hash" in p for p in json.loads(result.stdout)["problems"])


def test_audit_tamper_needs_a_file(lab: Lab) -> None:
    result = lab.invoke("audit", "--tamper")
    assert result.exit_code == 2
    assert "--tamper needs the FILE" in result.output


def test_doctor_reports_both_backends_as_json(lab: Lab) -> None:
    result = lab.invoke("doctor", "--json")
    data = json.loads(result.stdout)
    assert data["selected"] == "embedded"
    assert set(data["backends"]) == {"embedded", "kind"}
    names = [c["name"] for c in data["backends"]["embedded"]]
    assert "python >= 3.11" in names
    # The embedded backend has everything it needs here; kind may lack Docker (a warning for us).
    assert result.exit_code == 0


def _valid_chain(count: int) -> list[dict]:
    from lab.pdp.audit import record_hash

    records: list[dict] = []
    prev = ""
    for seq in range(1, count + 1):
        record = {
            "seq": seq,
            "time": "2026-01-01T00:00:00Z",
            "correlation_id": f"c{seq}",
            "client": "ai.agent",
            "subject": "human.idjag-learner",
            "resource": "api:docs",
            "action": "get",
            "decision": "deny",
            "reason": "no role",
            "prev_hash": prev,
        }
        record["hash"] = prev = record_hash(record)
        records.append(record)
    return records


def test_run_with_an_empty_range_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("run", "--from", "99")
    assert result.exit_code == 2
    assert "no steps between 99 and" in result.output


def test_verify_without_a_running_lab_exits_3_and_says_lab_up(lab: Lab) -> None:
    result = lab.invoke("verify", "--json", "-")
    assert result.exit_code == 3
    assert result.stdout == ""  # --json -: nothing but JSON on stdout, and there is none
    assert "lab up" in result.output


@pytest.mark.parametrize(
    ("running", "healthy", "results", "command"),
    [
        (False, False, {}, "lab up"),
        (True, False, {}, "lab status"),
        (True, True, {}, "lab step 1"),
        (True, True, {1: {"status": "passed"}, 2: {"status": "passed"}}, "lab step 3"),
        (True, True, {1: {"status": "passed"}, 2: {"status": "failed"}}, "lab reset --to 2"),
        (True, True, {n: {"status": "passed"} for n in (1, 2, 3)}, "lab verify"),
    ],
)
def test_lab_alone_names_the_one_next_command(
    running: bool, healthy: bool, results: dict, command: str
) -> None:
    from lab.cli.where import next_command

    assert next_command(running, healthy, results, [1, 2, 3])[1] == command


def test_version_prints_the_package_version(lab: Lab) -> None:
    result = lab.invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("idjag-lab ")


def test_lab_alone_after_a_challenge_run_says_check_your_fix() -> None:
    from lab.cli.where import next_command

    results = {1: {"status": "passed"}, 2: {"status": "challenge"}}
    situation, command = next_command(True, True, results, [1, 2, 3])
    assert command == "lab step 2 --check"
    assert "your turn" in situation


def test_audit_shows_control_characters_a_client_sent_never_obeys_them(lab: Lab, tmp_path) -> None:
    """The trail holds what clients sent (a client id, a scope quoted in a reason): printed to a
    terminal, ESC, the 8-bit CSI and a bidi override would recolour, clear or reverse the
    screen. They are shown as escapes; the record itself is unchanged (``--json``)."""
    records = _valid_chain(2)
    records[0]["client"] = "ai.agent\x1b[2J"
    records[1]["reason"] = "unknown scope 'x\x9b31m\u202eevil'"
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"records": records}))
    shown = lab.invoke("audit", str(path))
    assert shown.exit_code == 0, shown.output
    for raw in ("\x1b[2J", "\x9b", "\u202e"):
        assert raw not in shown.output, repr(shown.output)
    assert "\\x1b[2J" in shown.output and "\\x9b31m" in shown.output, shown.output
    assert "\\u202e" in shown.output, shown.output
    as_json = lab.invoke("audit", str(path), "--json")
    assert "ai.agent\x1b[2J" in {r["client"] for r in json.loads(as_json.stdout)["records"]}
