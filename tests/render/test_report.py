"""The verification contract: JSON records and JUnit XML from the same results."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from lab.render.report import to_json, to_junit
from tests.render.results import passed_and_failed


def test_json_record_per_step_with_checks_and_raw_tokens(tmp_path: Path) -> None:
    results = passed_and_failed(tmp_path)
    records = to_json(results)
    json.dumps(records)  # serialisable as is
    assert [r["number"] for r in records] == [4, 8, 9]
    first = records[0]
    assert set(first) >= {"number", "slug", "title", "status", "duration_ms", "checks", "tokens"}
    assert (first["slug"], first["status"], first["duration_ms"]) == (
        "role-membership",
        "passed",
        12.5,
    )
    assert first["checks"][0] == {
        "action": "get",
        "check": "status equals 200",
        "query": "status",
        "predicate": "equals",
        "expected": 200,
        "actual": 200,
        "passed": True,
        "why": "The learner holds the role.",
        "error": None,
    }
    assert first["tokens"][0]["token"] == results[0].tokens[0].token
    assert first["tokens"][1]["claims"]["act"] == {"sub": "mcp.api-mcp"}
    assert records[1]["checks"][0]["actual"] == 403 and records[1]["checks"][0]["passed"] is False
    assert records[1]["checks"][0]["reproduce"] == "lab mcp call list_docs --token T"
    assert "reproduce" not in first["checks"][0]
    assert records[2]["errors"] == [
        {"action": "sign_in", "error": "steps/09-sign-in.md: action sign_in: connection refused"}
    ]


def test_junit_counts_failures_and_errors(tmp_path: Path) -> None:
    root = ET.fromstring(to_junit(passed_and_failed(tmp_path)).split("?>", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "04-role-membership: Join the role",
        "08-protect-mcp: Protect the MCP server",
        "09-sign-in: Sign in",
    ]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert (
        failure is not None
        and "expected: 200" in (failure.text or "")
        and "actual: 403" in (failure.text or "")
        and "reproduce: lab mcp call list_docs" in (failure.text or "")
    )
    error = cases[2].find("error")
    assert error is not None and "connection refused" in (error.get("message") or "")


def test_junit_with_a_servers_control_characters_is_still_xml(tmp_path: Path) -> None:
    """A failed step's message quotes what a server sent; ESC in it made the XML not well-formed
    (XML 1.0 §2.2), and a CI then read no report at all."""
    from tests.render.test_terminal import _hostile_result

    xml = to_junit([_hostile_result(tmp_path), *passed_and_failed(tmp_path)])
    suite = ET.fromstring(xml.split("?>", 1)[1])
    failure = suite.find(".//failure")
    assert failure is not None and "\\x1b[2J" in failure.get("message", ""), xml
    assert suite.find("testsuite").get("tests") == "4"  # type: ignore[union-attr]
