"""The verification contract: one JSON record per step and JUnit XML, from the same results.

Secrets are already redacted in the results; the raw tokens issued are kept on purpose (CI
and the docs decode them).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from lab.render.run_model import step_model
from lab.render.shown import shown_lines
from lab.steps.model import StepResult

SUITE_NAME = "idjag-lab"


def step_record(result: StepResult) -> dict[str, Any]:
    """The one model of a run (:mod:`lab.render.run_model`): what the terminal draws too."""
    return step_model(result)


def to_json(results: Iterable[StepResult]) -> list[dict[str, Any]]:
    """JSON-ready records (``json.dumps(to_json(results))``)."""
    return [step_record(r) for r in results]


def to_junit(results: Iterable[StepResult], suite_name: str = SUITE_NAME) -> str:
    results = list(results)
    suite = ET.Element(
        "testsuite",
        name=suite_name,
        tests=str(len(results)),
        failures=str(sum(r.status == "failed" for r in results)),
        errors=str(sum(r.status == "error" for r in results)),
        skipped=str(sum(r.status in ("skipped", "challenge") for r in results)),
        time=f"{sum(r.duration_ms for r in results) / 1000:.3f}",
    )
    for result in results:
        suite.append(_testcase(result))
    root = ET.Element("testsuites", name=suite_name)
    root.append(suite)
    ET.indent(root)
    # ElementTree writes a control character a server sent (an error text quoting a hostile
    # value) as it is, and XML 1.0 (§2.2) has no place for most of them: one ESC made the whole
    # report unreadable to a CI. They are written as escapes (\x1b), as a terminal shows them.
    return shown_lines(ET.tostring(root, encoding="unicode", xml_declaration=True)) + "\n"


def _testcase(result: StepResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=f"steps.{result.mode}",
        name=f"{result.number:02d}-{result.slug}: {result.title}",
        file=result.path,
        time=f"{result.duration_ms / 1000:.3f}",
    )
    if result.status == "error":
        error = ET.SubElement(case, "error", message=result.message, type="ActionError")
        error.text = result.message
    elif result.status == "failed":
        failure = ET.SubElement(case, "failure", message=result.message, type="CheckFailed")
        failure.text = "\n".join(
            f"{c.action_id}: {c.check}\n  expected: {c.expected!r}\n"
            f"  actual: {c.actual!r}\n  why: {c.why}\n  reproduce: {a.curl or a.command}"
            for a in result.actions
            for c in a.checks
            if not c.passed
        )
    elif result.status in ("skipped", "challenge"):
        # A challenge left to the learner is neither passed nor failed (step-format.md).
        ET.SubElement(case, "skipped", message=result.message)
    out = ET.SubElement(case, "system-out")
    out.text = "\n".join(
        f"{'PASS' if c.passed else 'FAIL'} {c.action_id}: {c.check}" for c in result.checks
    )
    return case
