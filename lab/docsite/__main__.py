"""``python -m lab.docsite {capture,build,serve}``: the docs site and the real run it shows.

``capture`` starts a private lab (its own ``LAB_HOME`` under ``build/`` and free ports, so it never
touches a lab you have running), runs every step through the same code path as ``lab verify``, and
writes what a reader will see into ``build/docs-data/``: ``verify.json`` (the ``lab verify --json``
records plus each step's captured values, redacted as the engine redacts them) and one terminal
picture per step (``NN.svg``, rich's SVG export). ``build`` captures, then runs
``mkdocs build --strict``; ``serve`` runs ``mkdocs serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.docsite import pages

if TYPE_CHECKING:
    from lab.steps.model import StepResult

BUILD_DIR = pages.REPO_ROOT / "build"
CAPTURE_HOME = BUILD_DIR / "docs-lab"
#: Wide enough for request lines and decoded claims, narrow enough to read on a page.
TERMINAL_WIDTH = 100


class CaptureError(RuntimeError):
    """The private lab could not be started or the run could not be recorded."""


# ---------------------------------------------------------------------- private lab


def free_ports() -> dict[str, int]:
    """One free loopback port per part (``LAB_*_PORT`` name -> port)."""
    from lab.config import PORTS
    from lab.serving import bind_socket

    sockets = {var: bind_socket("127.0.0.1", 0) for var, _default in PORTS.values()}
    try:
        return {var: sock.getsockname()[1] for var, sock in sockets.items()}
    finally:
        for sock in sockets.values():
            sock.close()


def lab_env(home: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update({var: str(port) for var, port in ports.items()})
    env.update({"LAB_HOME": str(home), "LAB_BACKEND": "embedded"})
    return env


def lab_cli(args: Sequence[str], env: dict[str, str], timeout: float = 180) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lab.cli.main", *args],
        env=env,
        cwd=pages.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise CaptureError(
            f"`lab {' '.join(args)}` exited {proc.returncode}: " + " / ".join(detail)
        )


@contextmanager
def private_lab(home: Path) -> Iterator[dict[str, str]]:
    """A lab on free ports under ``home``; ``os.environ`` points at it while inside."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    env = lab_env(home, free_ports())
    saved = dict(os.environ)
    try:
        lab_cli(["up"], env)
        os.environ.clear()
        os.environ.update(env)
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        try:
            lab_cli(["down"], env, timeout=60)
        except (CaptureError, subprocess.TimeoutExpired) as exc:
            print(f"warning: could not stop the private docs lab: {exc}", file=sys.stderr)


# ---------------------------------------------------------------------- the run


def run_all_steps(svg_dir: Path) -> list[StepResult]:
    """Every step from the baseline, as ``lab verify`` runs them; one SVG per step."""
    from lab.cli.engine import StepSession, load_all_steps
    from lab.state import reset_to_baseline

    steps = load_all_steps()
    session = StepSession.open(checkpoints=False)
    reset_to_baseline(session.state)
    for step in steps:
        result = session.run(step)
        write_terminal_svg(result, svg_dir / f"{step.number:02d}.svg")
        status = "ok" if result.passed else f"{result.status}: {result.message}"
        print(f"  step {step.number:2d} {step.slug}: {status}", file=sys.stderr)
    return list(session.results)


def write_terminal_svg(result: StepResult, path: Path) -> None:
    """What ``lab step N`` prints for this result, as rich's SVG export."""
    from rich.console import Console

    from lab.render.terminal import print_step_result

    console = Console(
        record=True,
        width=TERMINAL_WIDTH,
        file=open(os.devnull, "w"),  # noqa: SIM115 - closed below
        force_terminal=True,
        color_system="truecolor",
    )
    try:
        print_step_result(console, result)
        path.write_text(console.export_svg(title=f"lab step {result.number}"), encoding="utf-8")
    finally:
        console.file.close()


def run_records(results: Sequence[StepResult]) -> list[dict[str, Any]]:
    """``lab verify --json`` records, each with the step's captured values (already redacted)."""
    from lab.render.report import to_json

    records = to_json(results)
    for record, result in zip(records, results, strict=True):
        captured: dict[str, Any] = {}
        for action in result.actions:
            captured.update(action.captured)
        record["captures"] = json.loads(json.dumps(captured, default=str))
    return records


def capture(data_dir: Path = pages.DATA_DIR, home: Path = CAPTURE_HOME) -> list[dict[str, Any]]:
    """Start a private lab, run every step, write ``verify.json`` and the SVGs, stop the lab."""
    tmp = data_dir.with_name(data_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with private_lab(home) as env:
        results = run_all_steps(tmp)
        records = run_records(results)
    (tmp / "verify.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
    normalise(tmp, env, home)
    leaks = find_secrets(tmp, home)
    if leaks:
        shutil.rmtree(tmp)
        raise CaptureError("a secret would reach the docs site: " + ", ".join(leaks))
    # Replace the old data only once the new run is complete and clean.
    if data_dir.exists():
        shutil.rmtree(data_dir)
    tmp.rename(data_dir)
    return records


def normalise(data_dir: Path, env: dict[str, str], home: Path) -> None:
    """Show the default ports and ``$LAB_HOME``: what a reader's own run prints, not ours."""
    from lab.config import PORTS

    swaps = {f"127.0.0.1:{env[var]}": f"127.0.0.1:{default}" for var, default in PORTS.values()}
    swaps.update({str(home.resolve()): "$LAB_HOME", str(home): "$LAB_HOME"})
    for path in data_dir.iterdir():
        text = path.read_text(encoding="utf-8")
        for old, new in swaps.items():
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")


def find_secrets(data_dir: Path, home: Path) -> list[str]:
    """Names of files under ``data_dir`` that contain a secret the private lab holds.

    The engine redacts what it knows is secret; this is the belt to its braces: every value
    captured with ``redact: true`` must be absent from what the site will publish.
    """
    from lab.config import Settings
    from lab.steps.captures import load_captures
    from lab.steps.values import realm_client_secret

    env = {**os.environ, "LAB_HOME": str(home)}
    values, redacted = load_captures(Settings.from_env(env))
    secrets = {str(values[n]) for n in redacted if n in values and len(str(values[n])) >= 6}
    secrets.add(realm_client_secret())
    # The realm's users sign in with the word "password": look for it as a value, not a word.
    patterns = ("password=password", '"password": "password"', "password=&#x27;password")
    leaks = []
    for path in sorted(data_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        if any(secret in text for secret in secrets) or any(p in text for p in patterns):
            leaks.append(path.name)
    return leaks


# ---------------------------------------------------------------------- build and serve


def mkdocs(args: Sequence[str]) -> int:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.call([sys.executable, "-m", "mkdocs", *args], cwd=pages.REPO_ROOT, env=env)


def serve(dev_addr: str) -> int:
    """Become ``mkdocs serve``: Ctrl-C and signals reach the server itself, no orphan is left."""
    os.chdir(pages.REPO_ROOT)
    os.environ["NO_MKDOCS_2_WARNING"] = "1"
    argv = [sys.executable, "-m", "mkdocs", "serve", "--dev-addr", dev_addr]
    os.execv(sys.executable, argv)
    return 0  # not reached: execv replaces this process


def summarise(records: Sequence[dict[str, Any]]) -> str:
    passed = sum(r.get("status") == "passed" for r in records)
    return f"{passed}/{len(records)} steps passed"


def build(no_capture: bool, site_dir: str | None) -> int:
    if no_capture:
        print(
            "Not capturing a new run (--no-capture); "
            "using the last capture in build/docs-data, if any.",
            file=sys.stderr,
        )
    else:
        print("Capturing a real run in a private lab…", file=sys.stderr)
        try:
            records = capture()
            print(f"Captured {summarise(records)} into {pages.DATA_DIR}.", file=sys.stderr)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the site builds without a run
            # SystemExit: the CLI helpers exit with a message (e.g. the engine is missing).
            print(
                f"The capture failed ({describe(exc)}); building the site without run data.",
                file=sys.stderr,
            )
            os.environ["LAB_DOCS_DATA"] = str(BUILD_DIR / "no-docs-data")
    args = ["build", "--strict"] + (["--site-dir", site_dir] if site_dir else [])
    return mkdocs(args)


def describe(exc: BaseException) -> str:
    """The lab's own one-line errors carry a message (and a fix); anything else its type."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    fix = getattr(exc, "fix", None)
    return f"{message}; fix: {fix}" if fix else str(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.docsite", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("capture", help="run every step in a private lab; write build/docs-data/")
    build_cmd = sub.add_parser("build", help="capture, then mkdocs build --strict")
    build_cmd.add_argument("--no-capture", action="store_true", help="build without a real run")
    build_cmd.add_argument(
        "--site-dir", default=None, help="where to write the site (default: site/)"
    )
    serve_cmd = sub.add_parser("serve", help="mkdocs serve (uses the last capture, if any)")
    serve_cmd.add_argument("--dev-addr", default="127.0.0.1:8000")
    args = parser.parse_args(argv)
    if args.command == "capture":
        try:
            records = capture()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one line, never a traceback
            print(f"error: {describe(exc)}", file=sys.stderr)
            return 3
        print(f"Captured {summarise(records)} into {pages.DATA_DIR}.", file=sys.stderr)
        return 0
    if args.command == "build":
        return build(args.no_capture, args.site_dir)
    return serve(args.dev_addr)


if __name__ == "__main__":
    sys.exit(main())
