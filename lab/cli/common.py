"""What every command shares: settings, the chosen backend, consoles, exit codes, error handling.

Results go to standard output; progress and diagnostics to standard error (so ``--json`` output
stays pure JSON). Rich drops colour by itself when the stream is not a terminal or ``NO_COLOR`` is
set. An expected failure is one sentence plus a suggested fix and a documented exit code, never a
traceback (``--debug`` shows it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    from lab.backends.base import Backend
    from lab.config import Endpoints, Settings


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check failed (a step's expectation, a broken audit chain, an unhealthy part)
    USAGE = 2  # bad command line (click's own code for usage errors)
    ENVIRONMENT = 3  # busy port, backend not up, missing engine or key, bad LAB_* setting


EXIT_CODES_HELP = (
    "Exit codes: 0 passed, 1 a check failed, 2 usage error, "
    "3 environment (busy port, backend not up, missing engine)."
)


class LabCliError(Exception):
    """An expected failure: shown as one sentence and a fix, ending with ``code``."""

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        code: int = ExitCode.ENVIRONMENT,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code
        #: What a program running ``lab`` may act on (``lab.cli.error_marker``), else None.
        self.kind = kind


@dataclass
class CliState:
    """Options given before the command (``lab --backend kind --debug up``)."""

    backend: str | None = None
    debug: bool = False


STATE = CliState()


# ---------------------------------------------------------------------- consoles


def out() -> Console:
    """Standard output: results. Width is the terminal's, or 80 when piped."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def err() -> Console:
    """Standard error: progress, warnings, errors."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def principal_argument(value: str) -> str:
    """A principal typed on the command line: a name, never a path (usage error)."""
    from lab.config import PRINCIPAL_NAME_RULE, is_principal_name

    if not is_principal_name(value):
        import typer

        raise typer.BadParameter(f"{value!r} is not a principal name ({PRINCIPAL_NAME_RULE})")
    return value


def write_output(path: str, text: str) -> None:
    """Write ``text`` to ``path``, or to stdout when ``path`` is ``-``."""
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def check_output_path(path: str, option: str) -> None:
    """Fail now, before a long run, if ``path`` (``-`` is stdout) cannot be written: `lab verify
    --junit /no/such/place` used to run every step, then lose the report to a bare
    "No such file or directory"."""
    if path == "-":
        return
    target = Path(path)
    existed = target.exists()
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(target))
        if target.parent.exists() and not target.parent.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(target.parent))
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a"):
            pass
    except OSError as exc:
        fail(
            f"{option} {path}: cannot write there ({exc.strerror or exc})",
            f"give {option} a file in a folder you can write, or - for stdout",
            ExitCode.USAGE,
        )
    if not existed:
        target.unlink(missing_ok=True)  # only a probe: the report is written when the run ends


# ---------------------------------------------------------------------- settings and backend


def settings() -> Settings:
    from lab.config import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise LabCliError(str(exc), f"fix or unset {exc.variable}") from None


def backend_name(current: Settings) -> str:
    """``--backend``, else ``LAB_BACKEND``, else the backend that wrote the runtime file."""
    if STATE.backend or os.environ.get("LAB_BACKEND"):
        return chosen_backend_name(current, None)
    try:
        record = json.loads(current.runtime_file.read_text())
    except (OSError, ValueError):
        record = None
    return chosen_backend_name(current, record)


def chosen_backend_name(current: Settings, record: Any) -> str:
    """:func:`backend_name` with the runtime file already read and parsed (None: absent)."""
    if STATE.backend:
        return STATE.backend
    if os.environ.get("LAB_BACKEND"):
        return current.backend
    recorded = record.get("backend") if isinstance(record, dict) else None
    return recorded if recorded in ("embedded", "kind") else current.backend


def backend(current: Settings | None = None, record: Any = None) -> Backend:
    """The backend for ``current``: chosen by :func:`backend_name`, or - given the runtime
    file's parsed ``record`` - by :func:`chosen_backend_name` without reading it again."""
    from lab.backends import get_backend

    current = current or settings()
    name = backend_name(current) if record is None else chosen_backend_name(current, record)
    return get_backend(name, current)


def running_endpoints(chosen: Backend) -> Endpoints:
    """The endpoints of the running backend, or an environment error saying how to start it."""
    return chosen.endpoints()


# ---------------------------------------------------------------------- error handling


@contextmanager
def handled_errors() -> Iterator[None]:
    """Turn the lab's expected failures into one clear sentence, a fix and an exit code."""
    # Typer runs this command, so it is loaded already; imported here, not at the top, so a
    # command run without Typer (lab.cli.reset_run) does not load it through this module.
    import typer

    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException, SystemExit, KeyboardInterrupt):
        raise  # exits and usage errors (exit 2) are typer's to report
    except Exception as exc:  # noqa: BLE001 - every failure leaves as a sentence, never a traceback
        if STATE.debug:
            raise
        message, fix, code = describe_error(exc)
        report_error(message, fix, error_kind(exc))
        raise typer.Exit(code) from None


def error_kind(exc: BaseException) -> str | None:
    """The failure's kind for a program running ``lab`` (``lab.cli.error_marker``)."""
    return exc.kind if isinstance(exc, LabCliError) else None


def lab_running_above() -> Path | None:
    """The folder above this one whose ``.lab`` records a running lab, when ``LAB_HOME`` is
    unset and ``./.lab`` records none: the learner who `cd steps` and types `lab step 3` is told
    "not running" about a lab that runs, only from the checkout's root."""
    if os.environ.get("LAB_HOME"):
        return None
    here = Path.cwd()
    if (here / ".lab" / "runtime.json").exists():
        return None
    for folder in here.parents:
        if (folder / ".lab" / "runtime.json").exists():
            return folder
    return None


def not_running_fix(default: str | None) -> str | None:
    """``default``, or where the running lab is when it runs from a folder above."""
    above = lab_running_above()
    if above is None:
        return default
    return f"the lab runs from {above}: `cd {above}` (or set LAB_HOME={above / '.lab'})"


def describe_error(exc: BaseException) -> tuple[str, str | None, int]:
    """Map an exception to (sentence, fix, exit code)."""
    from lab.backends.base import BackendError, BackendNotRunning
    from lab.state import StateError

    if isinstance(exc, LabCliError):
        return exc.message, exc.fix, exc.code
    if isinstance(exc, BackendNotRunning):
        return exc.message, not_running_fix(exc.fix), ExitCode.ENVIRONMENT
    if isinstance(exc, BackendError | StateError):
        return exc.message, exc.fix, ExitCode.ENVIRONMENT
    # Only a process that loaded the step engine can have raised it (as for PortInUse below).
    step_files = sys.modules.get("lab.steps.load")
    if step_files is not None and isinstance(exc, step_files.StepFileError):
        # An instructor's edit gone wrong is theirs to fix, not a bug to report.
        return (
            "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()),
            "fix that step file (its format: docs/reference/step-format.md)",
            ExitCode.ENVIRONMENT,
        )
    # Only a process that loaded lab.serving can have raised PortInUse; importing it just to
    # ask would load uvicorn (and click) into every command that fails (`lab reset`).
    serving = sys.modules.get("lab.serving")
    if serving is not None and isinstance(exc, serving.PortInUse):
        fix = f"set {exc.variable} to another port" if exc.variable else None
        return f"port {exc.port} on {exc.host} is already in use", fix, ExitCode.ENVIRONMENT
    http_error = _describe_http_error(exc)
    if http_error is not None:
        return http_error
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return (
        f"unexpected error: {type(exc).__name__}: {exc}",
        "run again with `lab --debug ...` for the traceback, and report it",
        ExitCode.FAILED,
    )


def describe_os_error(exc: OSError) -> tuple[str, str | None, int]:
    """Name the file a failed read or write was about, and whether ``LAB_HOME`` is to blame."""
    reason = exc.strerror or str(exc)
    if not exc.filename:
        return reason, "check file permissions and LAB_HOME", ExitCode.ENVIRONMENT
    path = Path(os.fsdecode(exc.filename))
    home = Path(os.environ.get("LAB_HOME") or ".lab")
    try:
        in_home = path.absolute().is_relative_to(home.absolute())
    except OSError:
        in_home = False
    fix = (
        f"point LAB_HOME at a folder you can write (now {home})"
        if in_home
        else "check that this path exists and that you may write to it"
    )
    return f"{reason}: {path}", fix, ExitCode.ENVIRONMENT


def _describe_http_error(exc: BaseException) -> tuple[str, str | None, int] | None:
    if "httpx" not in sys.modules:
        return None
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        url = exc.request.url if exc.request is not None else "the lab"
        return (
            f"nothing answers at {url}",
            "start the lab with `lab up` (and check `lab status`)",
            ExitCode.ENVIRONMENT,
        )
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP failure: {exc}", "check `lab status`", ExitCode.ENVIRONMENT
    return None


def report_error(message: str, fix: str | None, kind: str | None = None) -> None:
    console = err()
    program = lab_program()
    if fix and program != "lab":
        fix = fix.replace("`lab ", f"`{program} ")
    # soft_wrap: the terminal wraps, so a suggested command stays one copy-pasteable line.
    console.print(f"[bold red]error:[/] {shown_text(message)}", soft_wrap=True)
    if fix:
        console.print(f"[bold]fix:[/] {shown_text(fix)}", soft_wrap=True)
    from lab.cli import error_marker

    if error_marker.wanted():  # a program runs us: the same failure, as data
        sys.stderr.write(error_marker.marker_line(kind, message, fix) + "\n")
        sys.stderr.flush()


def shown_text(text: str) -> str:
    """Text that quotes what a server or a file sent (an error description, a path, a health
    detail) for a rich console: its control characters are shown as escapes and ``[…]`` is
    never read as markup; line breaks stay."""
    from lab.render.shown import shown_markup

    return shown_markup(text, lines=True)


def fail(
    message: str, fix: str | None = None, code: int = ExitCode.ENVIRONMENT, kind: str | None = None
) -> NoReturn:
    raise LabCliError(message, fix, code, kind)


# ---------------------------------------------------------------------- the command to type next


def lab_program() -> str:
    """How the learner types ``lab`` in a fresh shell: ``lab`` when that finds this very install,
    else the path of this install's ``lab`` (``.venv/bin/lab`` from the checkout).

    ``make run`` installs into ``.venv`` without activating it, so a bare ``lab`` would say
    "command not found"; every "Next:" line must work exactly as printed.
    """
    import shutil

    installed = Path(sys.prefix) / "bin" / "lab"
    if not installed.exists():
        return "lab"
    found = shutil.which("lab")
    try:
        if found and Path(found).resolve() == installed.resolve():
            return "lab"
    except OSError:
        pass
    try:
        return str(installed.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(installed.absolute())


def lab_command(args: str) -> str:
    """``lab ARGS`` as the learner can paste it (see :func:`lab_program`)."""
    return f"{lab_program()} {args}".rstrip()
