"""The ``lab ui`` Starlette app: the steps, each step's last run model, live updates, and
(with the launch token) running or resetting to a step.

Routes::

    GET  /                      the page (lab/ui/static/index.html)
    GET  /static/...            its CSS and JS, shipped in the package
    GET  /api/steps             every step: number, slug, title, teaches, last status
    GET  /api/runs/{n}          step n's last run model (404 before its first run), each
                                token's signature checked against its issuer's JWKS
    GET  /api/audit             `lab audit --verify --json`: the current run's records and the
                                verdict on the whole hash chain (requests that arrive while
                                one runs share its answer: one audit process at a time)
    GET  /api/events            Server-Sent Events: "changed" whenever a step result is saved
    POST /api/steps/{n}/run     run step n (`lab step n --json`); needs the launch token
    POST /api/run-all           run every step in order (`lab run`); needs the launch token
    POST /api/reset             {"to": n}: `lab reset --to n`; needs the launch token
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lab.cli import error_marker
from lab.config import Endpoints, Settings
from lab.oauth.errors import InvalidRequest
from lab.oauth.starlette import HostCheck, exception_handlers, read_json
from lab.ui.guard import TOKEN_HEADER, OriginCheck, token_matches
from lab.ui.redaction import redact_run
from lab.ui.shared_run import SharedRun
from lab.ui.signatures import Signatures

STATIC = Path(__file__).resolve().parent / "static"
#: How often the event stream looks at $LAB_HOME for new results (a file stat, cheap).
POLL_S = 0.25
#: A comment line this often keeps proxies and the browser from closing an idle stream.
KEEPALIVE_S = 15.0
#: A step that runs longer than this is stopped (the slowest step takes a few seconds).
RUN_TIMEOUT_S = 300.0
#: The whole lab (every step, from the baseline) takes well under a minute on a laptop.
RUN_ALL_TIMEOUT_S = 900.0
#: How long a run or reset from the page waits for a `lab` command another terminal is running
#: (the CLI waits 10 minutes by default; a page would look hung): then 409 "busy", naming it.
LOCK_WAIT_S = "3"

#: Every page response: no framing (clickjacking), only this server's own scripts and styles.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class StepNumber(Convertor[int]):
    """A step number in a path: at most six digits. Starlette's ``int`` takes any length, and
    ``int()`` of more than 4300 digits raises (CPython's limit), a 500 before any handler."""

    regex = "[0-9]{1,6}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("step", StepNumber())


@dataclass
class LabCommands:
    """Runs ``lab`` subcommands as subprocesses: the CLI's own engine, lock and recorder."""

    env: Mapping[str, str]
    cwd: Path | None = None

    def __call__(self, *args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "lab.cli", *args],
            env={
                **dict(self.env),
                "NO_COLOR": "1",
                "LAB_LOCK_WAIT_S": LOCK_WAIT_S,
                error_marker.ENV: "1",  # a failure comes back as data too (busy, above all)
            },
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=RUN_ALL_TIMEOUT_S if args[:1] == ("run",) else RUN_TIMEOUT_S,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr


Runner = Callable[..., tuple[int, str, str]]


def create_app(
    settings: Settings,
    token: str,
    runner: Runner,
    endpoints: Callable[[], Endpoints] | None = None,
) -> Starlette:
    """The view of the lab whose state lives in ``settings.home``; ``endpoints`` gives the
    running lab's endpoints (default: the settings'), whose JWKS check the tokens."""
    busy = asyncio.Lock()
    signatures = Signatures(endpoints or (lambda: settings.endpoints))

    def require_token(request: Request) -> None:
        if not token_matches(request.headers.get(TOKEN_HEADER), token):
            raise Forbidden("running or resetting needs the token `lab ui` printed")

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def steps(request: Request) -> Response:
        return JSONResponse({"steps": step_rows(settings)}, headers={"Cache-Control": "no-store"})

    async def run_of(request: Request) -> Response:
        from lab.state import load_run_model

        number: int = request.path_params["number"]  # StepNumber made it an int
        record = load_run_model(settings, number)
        if record is None:
            return JSONResponse(
                {"error": "not_found", "error_description": f"step {number} has not run yet"},
                status_code=404,
            )
        record = await asyncio.to_thread(signatures.annotate, record)
        # Checked with the raw tokens; served without them (lab.ui.redaction).
        return JSONResponse(redact_run(record), headers={"Cache-Control": "no-store"})

    async def run_audit() -> tuple[int, str, str]:
        # The CLI's own command: the same records, the same hash-chain and seal verification.
        return await asyncio.to_thread(runner, "audit", "--verify", "--json")

    # Concurrent requests share one run (lab.ui.shared_run): one audit process at a time.
    shared_audit = SharedRun(run_audit)

    async def audit(request: Request) -> Response:
        code, out, err = await shared_audit()
        try:
            data = json.loads(out)
        except ValueError:
            return JSONResponse(
                {"error": "audit_unavailable", "error_description": last_line(err or out)},
                status_code=502,
            )
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            return JSONResponse(
                {"error": "audit_unavailable", "error_description": "no records came back"},
                status_code=502,
            )
        data["exit_code"] = code
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    async def run_lab(*args: str) -> tuple[int, str, str] | Response:
        """A lab command for the page, one at a time: its (exit code, stdout, stderr), or a 409
        while the page's own command or a terminal's holds the lab."""
        if busy.locked():
            return conflict()
        async with busy:
            code, out, err = await asyncio.to_thread(runner, *args)
        holder = held_elsewhere(code, err)
        if holder is not None:
            return conflict(holder)
        return code, out, err

    async def run_all(request: Request) -> Response:
        require_token(request)
        # `lab run`: the CLI resets to the baseline and runs every step through the same engine,
        # saving each result as it goes, so the event stream shows them one by one.
        ran = await run_lab("run")
        if isinstance(ran, Response):
            return ran
        code, out, err = ran
        rows = step_rows(settings)
        return JSONResponse(
            {
                "exit_code": code,
                "steps": [{"number": r["number"], "status": r["status"]} for r in rows],
                "message": last_line(err or out) if code != 0 else "",
            }
        )

    async def run_step(request: Request) -> Response:
        require_token(request)
        number: int = request.path_params["number"]  # StepNumber made it an int
        missing = no_such_step(number)
        if missing is not None:
            return missing
        ran = await run_lab("step", str(number), "--json")
        if isinstance(ran, Response):
            return ran
        code, out, err = ran
        try:
            record = json.loads(out)
        except ValueError:
            return JSONResponse(
                {"error": "step_not_run", "error_description": last_line(err)}, status_code=502
            )
        return JSONResponse({"exit_code": code, "run": record})

    async def reset(request: Request) -> Response:
        require_token(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            # A list or a string is no request for the baseline: say so, reset nothing.
            raise InvalidRequest('the body must be a JSON object: {"to": n} or {"to": null}')
        to = body.get("to")
        if to is not None and (not isinstance(to, int) or isinstance(to, bool) or to < 1):
            raise InvalidRequest('"to" must be a step number (or null for the baseline)')
        if to is not None and (missing := no_such_step(to)) is not None:
            return missing
        ran = await run_lab("reset", "--json", *(["--to", str(to)] if to else []))
        if isinstance(ran, Response):
            return ran
        code, out, err = ran
        if code != 0:
            return JSONResponse(
                {"error": "reset_failed", "error_description": last_line(err or out)},
                status_code=502,
            )
        return JSONResponse({"exit_code": code, "to": to})

    async def events(request: Request) -> Response:
        return StreamingResponse(
            change_events(settings, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", page),
        Route("/api/steps", steps),
        Route("/api/runs/{number:step}", run_of),
        Route("/api/steps/{number:step}/run", run_step, methods=["POST"]),
        Route("/api/run-all", run_all, methods=["POST"]),
        Route("/api/reset", reset, methods=["POST"]),
        Route("/api/audit", audit),
        Route("/api/events", events),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = exception_handlers()
    handlers[Forbidden] = forbidden
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        # Outermost first: Host (DNS rebinding, nosniff), then Origin (other pages).
        middleware=[Middleware(HostCheck), Middleware(OriginCheck)],
    )
    app.state.audit_run = shared_audit
    return app


class Forbidden(Exception):
    pass


async def forbidden(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "forbidden", "error_description": str(exc)}, status_code=403)


def conflict(description: str = "another run or reset is still going") -> Response:
    return JSONResponse({"error": "busy", "error_description": description}, status_code=409)


def no_such_step(number: int) -> Response | None:
    """404 when the lab has no step ``number`` (the step files say; no results are read)."""
    from lab.steps import load_steps

    if any(step.number == number for step in load_steps()):
        return None
    return JSONResponse(
        {"error": "not_found", "error_description": f"there is no step {number}"[:100]},
        status_code=404,
    )


def held_elsewhere(code: int, err: str) -> str | None:
    """What holds the lab ("another lab command (pid N: lab run) …") when the command gave up
    waiting for the lab lock: a `lab` command in a terminal holds it. Told by the CLI's marker
    (``lab.cli.error_marker``), never by its wording; None when the command was not refused."""
    if code != 3:
        return None
    marker = error_marker.read_marker(err)
    if marker is None or marker.get("kind") != error_marker.BUSY:
        return None
    return str(marker["message"])


def last_line(text: str) -> str:
    """The last line a person would read (the CLI's marker line is for this program)."""
    lines = [
        line.strip()
        for line in text.strip().splitlines()
        if line.strip() and not error_marker.is_marker(line)
    ]
    return lines[-1][:300] if lines else "the lab command printed nothing"


def step_rows(settings: Settings) -> list[dict[str, Any]]:
    """Each step with its last outcome (what ``lab steps --json`` lists) and opening prose."""
    from lab.render.run_model import split_narrative
    from lab.state import load_results
    from lab.steps import load_steps

    results = load_results(settings)
    rows = []
    for step in load_steps():
        opening, _ = split_narrative(step.body)
        rows.append(
            {
                "number": step.number,
                "slug": step.slug,
                "title": step.title,
                "teaches": step.teaches,
                "opening": opening,
                "status": results.get(step.number, {}).get("status", "not run"),
            }
        )
    return rows


def state_version(settings: Settings) -> tuple[float, ...]:
    """Changes whenever a result or a run model is written (atomic replace: a new mtime)."""
    from lab.state import results_file, runs_dir

    stamps = []
    for path in [results_file(settings), *sorted(runs_dir(settings).glob("step-*.json"))]:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except FileNotFoundError:
            stamps.append(0)
    return tuple(stamps)


async def change_events(settings: Settings, request: Request) -> AsyncIterator[str]:
    """``event: changed`` at once (the page loads its data) and after every saved result."""
    seen: tuple[float, ...] | None = None
    quiet = 0.0
    while not await request.is_disconnected():
        version = state_version(settings)
        if version != seen:
            seen = version
            quiet = 0.0
            yield f"event: changed\ndata: {json.dumps({'steps': step_statuses(settings)})}\n\n"
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)
        quiet += POLL_S


def step_statuses(settings: Settings) -> dict[str, str]:
    from lab.state import load_results

    return {str(n): str(r.get("status", "not run")) for n, r in load_results(settings).items()}
