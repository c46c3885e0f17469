"""``audit``: export the PDP's hash-chained audit trail, verify it, or tamper with an exported
copy (step 17 shows that verification catches the edit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.steps import shell
from lab.steps.actions import request
from lab.steps.actions.base import ActionError, Produced
from lab.steps.queries import Outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext

DEFAULT_FILE = "audit.json"


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    op = spec["op"]
    path = audit_path(spec, ctx)
    if op == "export":
        return _export(path, ctx, spec)
    records, segment = _read(path)
    if op == "tamper":
        records = _tamper(records, spec)
        document: dict[str, Any] = {"records": records}
        if segment:
            document["segment"] = True
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        return Produced(
            outcome=Outcome(result=summary(records, None)), command=" ".join(command(spec, ctx))
        )
    problems = verify(records, anchored=not segment)
    return Produced(
        outcome=Outcome(result=summary(records, problems)), command=" ".join(command(spec, ctx))
    )


def audit_path(spec: dict[str, Any], ctx: RunContext) -> Path:
    relative = Path(str(spec.get("path") or DEFAULT_FILE))
    if relative.is_absolute() or ".." in relative.parts:
        raise ActionError(f"audit.path {relative} must be a file name under $LAB_HOME")
    return ctx.settings.home / relative


def _export(path: Path, ctx: RunContext, spec: dict[str, Any]) -> Produced:
    # ``last: N`` exports the N latest decisions: a step about the last chain must not slow
    # down with the size of the whole trail (a busy lab holds hundreds of thousands).
    last = spec.get("last")
    # Only this run's records (after the last `lab reset`, lab.state.load_run_start): the trail
    # itself keeps every run, and `lab audit --verify` still checks all of it.
    from lab.state import load_run_start

    since = load_run_start(ctx.settings)
    url = f"{ctx.endpoints.zms}/lab/audit?since={since}" + (f"&last={int(last)}" if last else "")
    produced = request.run({"method": "GET", "url": url, "auth": "admin"}, ctx)
    body = produced.outcome.result.get("body")
    records = body.get("records") if isinstance(body, dict) else None
    if produced.outcome.status != 200 or not isinstance(records, list):
        produced.outcome = Outcome(
            status=produced.outcome.status,
            headers=produced.outcome.headers,
            text=produced.outcome.text,
            result={"status": produced.outcome.status, "body": body, "records": [], "count": 0},
        )
        return produced
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"records": records}
    if records and records[0].get("seq") != 1:
        document["segment"] = True  # starts mid-trail: its first prev_hash is taken as given
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    result = {"status": 200, "path": str(path), "run_start": since, **summary(records, None)}
    produced.outcome = Outcome(
        status=200, headers=produced.outcome.headers, text=produced.outcome.text, result=result
    )
    produced.command = " ".join(command(spec, ctx))
    return produced


def _read(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The exported records, and whether they are a segment (the last N, see ``_export``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ActionError(
            f"no audit export at {path}: run an `audit: {{op: export}}` action first"
        ) from None
    except ValueError as exc:
        raise ActionError(f"{path} is not JSON: {exc}") from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ActionError(f"{path} holds no list of records")
    return records, isinstance(data, dict) and data.get("segment") is True


def _tamper(records: list[dict[str, Any]], spec: dict[str, Any]) -> list[dict[str, Any]]:
    index = int(spec.get("record", -1))
    if not records or not -len(records) <= index < len(records):
        raise ActionError(f"audit.tamper: no record {index} in {len(records)} records")
    edited = [dict(r) for r in records]
    edited[index][str(spec.get("field", "decision"))] = spec.get("value", "allow")
    return edited


def verify(records: list[dict[str, Any]], anchored: bool = True) -> list[str]:
    from lab.pdp.audit import verify_chain  # written by the PDP part; imported only when used

    return [str(p) for p in verify_chain(records, anchored=anchored)]


def summary(records: list[dict[str, Any]], problems: list[str] | None) -> dict[str, Any]:
    """Records, their count, problems and validity, and the last chain (same correlation id)."""
    last_id = records[-1].get("correlation_id") if records else None
    result: dict[str, Any] = {
        "records": records,
        "count": len(records),
        "last_chain": [
            r for r in records if last_id is not None and r.get("correlation_id") == last_id
        ],
    }
    if problems is not None:
        result.update(problems=problems, valid=not problems)
    return result


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    path = shell.quote(str(ctx.settings.home / str(spec.get("path") or DEFAULT_FILE)))
    if spec["op"] == "export":
        return ["lab", "audit", "--json", ">", path]
    if spec["op"] == "verify":
        return ["lab", "audit", "--verify"]
    field, value = str(spec.get("field", "decision")), json.dumps(spec.get("value", "allow"))
    edit = f".records[{int(spec.get('record', -1))}].{field} = {value}"
    return ["jq", shell.quote(edit), path, ">", f"{path}.new", "&&", "mv", f"{path}.new", path]
