"""Running steps against small real servers: checks, captures across steps, failures, redaction."""

from __future__ import annotations

import json
import os
import re
import socket
import textwrap
from pathlib import Path

import pytest

from lab.config import Settings
from lab.oauth.jose import SigningKey
from lab.render.report import to_json
from lab.render.terminal import step_result_text
from lab.steps import load_step
from lab.steps.captures import captures_file
from lab.steps.engine import RunContext, apply_solution, check_step, run_step
from tests.steps.conftest import SAMPLES
from tests.steps.fake_lab import CLIENT_SECRET, FakeBackend, FakeLab

pytestmark = pytest.mark.usefixtures("fake_lab")


def token_action(action_id: str, role: str) -> str:
    """A client-credentials request as the learner, as a list item under ``actions:``."""
    return (
        f"  - id: {action_id}\n"
        "    request:\n"
        "      method: POST\n"
        "      url: ${endpoints.zts_token}\n"
        f'      form: {{grant_type: client_credentials, scope: "api:role.{role}"}}\n'
        "      auth: {client_assertion: human.idjag-learner}\n"
    )


def step_file(tmp_path: Path, front: str, number: int = 1, slug: str = "t", body: str = "") -> Path:
    path = tmp_path / f"{number:02d}-{slug}.md"
    head = f"---\nstep: {number}\nslug: {slug}\ntitle: Test {number}\n"
    path.write_text(f"{head}{textwrap.dedent(front).strip()}\n---\n{body}", encoding="utf-8")
    return path


def learner_key(settings: Settings) -> None:
    SigningKey.load_or_create(settings.key_file("human.idjag-learner"))


def normalise(text: str, home: Path) -> str:
    """Remove what changes from run to run: ports, key ids, token ids, times, fingerprints."""
    text = text.replace(str(home), "$LAB_HOME")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"eyJ[A-Za-z0-9_\-]{7}…[A-Za-z0-9_\-]{6}", "eyJ…TOKEN", text)
    text = re.sub(r"fp [0-9a-f]{12}", "fp FINGERPRINT", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "JTI", text)
    text = re.sub(r"\d{10} \(\d\d:\d\d:\d\d UTC\)", "TIME", text)
    text = re.sub(r"\d+ ms", "N ms", text)
    text = re.sub(r'("kid": "|header\.kid  )[A-Za-z0-9_\-]{16}', r"\1KID", text)
    text = re.sub(r'"public_ybase64": "[^"]*"', '"public_ybase64": "PUBLIC"', text)
    return text


def test_sample_step_passes_and_renders_as_expected(
    ctx: RunContext, lab_settings: Settings
) -> None:
    result = run_step(load_step(SAMPLES / "01-sample.md"), ctx)
    assert result.status == "passed", result.message
    assert len(result.checks) == 10 and all(c.passed for c in result.checks)
    assert [t.label for t in result.tokens] == ["access_token"]
    assert result.tokens[0].claims["sub"] == "human.idjag-learner"
    assert 'challenge `Bearer realm="api"`' in result.body
    rendered = normalise(step_result_text(result), lab_settings.home)
    expected_file = SAMPLES / "01-sample.expected.txt"
    if os.environ.get("LAB_UPDATE_SAMPLES") == "1":  # after an intended change; review the diff
        expected_file.write_text(rendered, encoding="utf-8")
    assert rendered == expected_file.read_text(encoding="utf-8")


def test_captures_persist_to_the_next_step_and_the_next_process(
    tmp_path: Path, lab_settings: Settings
) -> None:
    first = step_file(
        tmp_path,
        "actions:\n"
        + token_action("token", "docs-getter")
        + "    capture:\n"
        + "      access_token: {json: $.access_token}\n"
        + "      sub: {token: $.access_token, claim: sub}\n",
    )
    second = step_file(
        tmp_path,
        """
        actions:
          - id: docs
            request:
              method: GET
              url: ${endpoints.docapi_protected}/api/docs
              auth: {bearer: "${access_token}"}
            expect:
              - status: 200
              - json: $.caller.sub
                equals: ${sub}
        """,
        number=2,
    )
    learner_key(lab_settings)
    assert run_step(load_step(first), RunContext(lab_settings)).status == "passed"
    saved = json.loads(captures_file(lab_settings).read_text())
    assert saved["values"]["sub"] == "human.idjag-learner"
    assert oct(captures_file(lab_settings).stat().st_mode & 0o777) == "0o600"
    later = run_step(load_step(second), RunContext(lab_settings))  # a new context reads the file
    assert later.status == "passed", later.message


def test_failed_expectation_is_a_failed_step_with_expected_and_actual(
    tmp_path: Path, ctx: RunContext
) -> None:
    path = step_file(
        tmp_path,
        """
        actions:
          - id: anon
            request: {method: GET, url: "${endpoints.docapi_protected}/api/docs"}
            expect:
              - status: 200
                why: Should be open.
              - header: WWW-Authenticate
        """,
    )
    result = run_step(load_step(path), ctx)
    assert result.status == "failed"
    failed = [(c.action_id, c.expected, c.actual, c.why) for c in result.checks if not c.passed]
    assert failed == [("anon", 200, 401, "Should be open.")]
    assert str(path) in result.message and "action anon" in result.message
    text = step_result_text(result)
    assert "expected: 200" in text and "actual:   401" in text
    assert "reproduce with:" in text and "curl -sS -i" in text


def test_connection_refused_is_an_error_result_not_a_crash(tmp_path: Path, ctx: RunContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        path = step_file(
            tmp_path,
            f"""
            actions:
              - id: down
                request: {{method: GET, url: "http://127.0.0.1:{port}/x"}}
                expect:
                  - status: 200
              - {{id: never, wait: {{seconds: 0}}}}
            """,
        )
        result = run_step(load_step(path), ctx)
    assert result.status == "error"
    assert [a.action_id for a in result.actions] == ["down"]  # later actions are not attempted
    assert "connection refused" in result.message
    assert "action down" in result.message and str(path) in result.message


def test_missing_value_names_file_action_and_variable(
    tmp_path: Path, lab_settings: Settings
) -> None:
    path = step_file(
        tmp_path,
        """
        actions:
          - id: use
            request: {method: GET, url: "${endpoints.zms}/${nobody_captured_this}"}
        """,
    )
    result = run_step(load_step(path), RunContext(lab_settings, persist=False))
    assert result.status == "error"
    assert str(path) in result.message and "action use" in result.message
    assert "${nobody_captured_this}" in result.message


def test_secrets_are_redacted_in_output_and_reports_but_tokens_are_kept(
    tmp_path: Path, ctx: RunContext
) -> None:
    path = step_file(
        tmp_path,
        textwrap.dedent(
            """
            actions:
              - id: secret
                request:
                  method: POST
                  url: ${endpoints.zms}/domain/api/service/client/secret
                  auth: admin
                capture:
                  client_secret: {json: $.clientSecret, redact: true}
                expect:
                  - json: $.clientSecret
                    equals: "${client_secret}"
              - id: echo
                request:
                  method: POST
                  url: ${endpoints.zts}/../../echo
                  form: {client_secret: "${client_secret}", password: hunter2-pass}
            """
        ).strip()
        + "\n"
        + token_action("token", "docs-getter"),
        body="The secret is {{ client_secret }}.\n",
    )
    learner_key(ctx.settings)
    result = run_step(load_step(path), ctx)
    assert result.status == "passed", result.message
    text = step_result_text(result, verbose=True)
    report = json.dumps(to_json([result]))
    for shown in (text, report):
        assert CLIENT_SECRET not in shown
        assert "hunter2-pass" not in shown
    assert "The secret is ***." in result.body
    assert "$(lab sign-assertion user.athenz_admin" in text  # the admin assertion is never printed
    assert result.tokens[0].token in report  # the verify contract keeps raw tokens issued
    assert "client_secret" in json.loads(captures_file(ctx.settings).read_text())["redacted"]


def test_setting_providers_wait_and_keygen_actions(
    tmp_path: Path, ctx: RunContext, fake_lab: FakeLab
) -> None:
    path = step_file(
        tmp_path,
        """
        actions:
          - id: switch
            setting: {part: mcpserver, name: require_access, value: true}
            expect:
              - status: 200
              - json: $.require_access
                equals: true
          - id: trust
            providers:
              set:
                - issuerUri: ${endpoints.idp_issuer}
                  jwksUri: ${endpoints.idp_jwks}
                  principalTemplate: "human.{preferred_username}"
            expect:
              - result: count
                equals: 1
          - {id: pause, wait: {seconds: 0.01}}
          - id: key
            keygen: {principal: ai.agent}
            capture:
              agent_kid: {result: kid}
            expect:
              - result: kid
                equals: ${keys.ai.agent.kid}
        """,
    )
    result = run_step(load_step(path), ctx)
    assert result.status == "passed", result.message
    assert fake_lab.settings_seen == [{"require_access": True}]
    assert fake_lab.reloads == 1
    providers = json.loads(ctx.settings.providers_file.read_text())
    assert providers[0]["principalTemplate"] == "human.{preferred_username}"
    assert ctx.settings.key_file("ai.agent").stat().st_mode & 0o777 == 0o600


def test_providers_without_backend_is_a_clear_error(tmp_path: Path, lab_settings: Settings) -> None:
    path = step_file(tmp_path, "actions:\n  - {id: trust, providers: {set: []}}\n")
    result = run_step(load_step(path), RunContext(lab_settings, backend=None, persist=False))
    assert result.status == "error" and "needs a running backend" in result.message


def test_audit_export_verify_and_tamper(tmp_path: Path, ctx: RunContext, fake_lab: FakeLab) -> None:
    from lab.pdp.audit import record_hash

    prev = ""
    for seq, decision in enumerate(["allow", "deny"], start=1):
        record = {
            "seq": seq, "time": "t", "correlation_id": "c1", "client": "ai.agent",
            "subject": "human.idjag-learner", "resource": "api:docs", "action": "get",
            "decision": decision, "reason": "r", "prev_hash": prev,
        }  # fmt: skip
        record["hash"] = record_hash(record)
        prev = record["hash"]
        fake_lab.audit.append(record)
    path = step_file(
        tmp_path,
        """
        actions:
          - id: export
            audit: {op: export, path: audit.json}
            expect:
              - result: count
                equals: 2
              - result: last_chain.length()
                equals: 2
          - id: verify
            audit: {op: verify, path: audit.json}
            expect:
              - result: valid
                equals: true
          - id: tamper
            audit: {op: tamper, path: audit.json, record: -1, field: decision, value: allow}
          - id: verify_again
            audit: {op: verify, path: audit.json}
            expect:
              - result: valid
                equals: false
              - result: problems
                length: 1
        """,
    )
    result = run_step(load_step(path), ctx)
    assert result.status == "passed", result.message


def test_check_mode_runs_check_actions_or_marked_actions(tmp_path: Path, ctx: RunContext) -> None:
    with_check = step_file(
        tmp_path,
        """
        actions:
          - {id: a, wait: {seconds: 0}}
        check:
          - id: verify
            request: {method: GET, url: "${endpoints.docapi_protected}/api/docs"}
            expect:
              - status: 401
        """,
    )
    marked = step_file(
        tmp_path,
        """
        actions:
          - {id: a, wait: {seconds: 0}}
          - {id: b, wait: {seconds: 0}, check: true}
        """,
        number=2,
        slug="m",
    )
    none = step_file(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n", number=3, slug="n")
    checked = check_step(load_step(with_check), ctx)
    assert (checked.status, checked.mode) == ("passed", "check")
    assert [a.action_id for a in checked.actions] == ["verify"]
    assert [a.action_id for a in check_step(load_step(marked), ctx).actions] == ["b"]
    assert check_step(load_step(none), ctx).status == "skipped"


def test_solution_file_actions_are_applied(
    tmp_path: Path, ctx: RunContext, fake_lab: FakeLab
) -> None:
    solution = tmp_path / "solution.yaml"
    solution.write_text(
        "actions:\n"
        "  - id: fix\n"
        "    setting: {part: mcpserver, name: require_access, value: false}\n",
        encoding="utf-8",
    )
    step = load_step(
        step_file(
            tmp_path, f"solution: {solution}\nactions:\n  - {{id: a, wait: {{seconds: 0}}}}\n"
        )
    )
    result = apply_solution(step, ctx)
    assert (result.status, result.mode) == ("passed", "solution")
    assert fake_lab.settings_seen == [{"require_access": False}]
    no_solution = step_file(tmp_path, "actions:\n  - {id: a, wait: {seconds: 0}}\n", 2, "s")
    assert apply_solution(load_step(no_solution), ctx).status == "error"


def test_next_token_shows_what_changed(tmp_path: Path, ctx: RunContext) -> None:
    learner_key(ctx.settings)
    front = "actions:\n" + token_action("one", "docs-getter") + token_action("two", "mcp-accessor")
    result = run_step(load_step(step_file(tmp_path, front)), ctx)
    second = result.tokens[1]
    assert second.previous == "one.access_token"
    assert ("scope", "docs-getter", "mcp-accessor") in second.changes
    assert "scope: docs-getter → mcp-accessor" in step_result_text(result, verbose=True)
    assert "(changed: scope)" in step_result_text(result)


def test_fake_backend_is_used_by_providers(lab_settings: Settings) -> None:
    assert isinstance(
        RunContext(lab_settings, backend=FakeBackend(lab_settings)).backend, FakeBackend
    )
