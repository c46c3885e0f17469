"""``lab steps``, ``lab step N``, ``lab run``, ``lab verify``: the numbered steps."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from lab.cli import common
from lab.cli.engine import StepSession, find_step, load_all_steps, print_result
from lab.cli.lock import command_line, lab_lock

if TYPE_CHECKING:
    from rich.console import Console

    from lab.steps.model import Step, StepResult

app = typer.Typer()

STATUS_MARKS = {
    "passed": "[green]✓ passed[/]",
    "failed": "[red]✗ failed[/]",
    "error": "[red]✗ error[/]",
    "skipped": "[yellow]– skipped[/]",
    "challenge": "[yellow]◆ your turn[/] (challenge)",
    "interrupted": "[yellow]! interrupted[/]",
}


@app.command("steps")
def list_steps(
    json_output: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the steps with the outcome of each one's last run."""
    from lab.cli.lock import recover_killed_command
    from lab.state import load_results

    settings = common.settings()
    recover_killed_command(settings.home)
    steps = load_all_steps()
    results = load_results(settings)
    rows = [
        {
            "number": s.number,
            "slug": s.slug,
            "title": s.title,
            "teaches": s.teaches,
            "status": results.get(s.number, {}).get("status", "not run"),
        }
        for s in steps
    ]
    if json_output:
        common.print_json({"steps": rows})
        return
    from rich.table import Table

    table = Table(expand=False)
    table.add_column("#", justify="right")
    table.add_column("step", overflow="fold")
    table.add_column("last run", no_wrap=True)
    for row in rows:
        mark = STATUS_MARKS.get(str(row["status"]), "[dim]not run[/]")
        table.add_row(str(row["number"]), f"{row['title']}\n[dim]{row['slug']}[/]", mark)
    common.out().print(table)


@app.command("step")
def step_command(
    number: int = typer.Argument(..., help="The step number (see `lab steps`)."),
    manual: bool = typer.Option(
        False, "--manual", help="Print the exact commands instead of running them."
    ),
    check: bool = typer.Option(False, "--check", help="Verify the state you produced by hand."),
    hint: bool = typer.Option(False, "--hint", help="Show the challenge's hint."),
    solution: bool = typer.Option(False, "--solution", help="Apply the challenge's solution."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show every header, body and claim, and the commands."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the run as JSON (the record `lab verify --json` writes)."
    ),
) -> None:
    """Run one step: each action, the claims that matter, and ✓/✗ for each expectation."""
    if sum([manual, check, hint, solution]) > 1:
        common.fail(
            "choose only one of --manual, --check, --hint, --solution",
            "run `lab step N --help`",
            common.ExitCode.USAGE,
        )
    step = find_step(load_all_steps(), number)
    if hint:
        show_hint(step)
        return
    session = StepSession.open()
    if manual:
        typer.echo(session.manual(step))
        return
    with lab_lock(session.settings.home, command_line()):
        from lab.state import load_results

        results = load_results(session.settings)  # before this run records its own outcome
        ahead = later_step_passed(results, number)
        was_interrupted = results.get(number, {}).get("status") == "interrupted"
        result = run_step_mode(session, step, check=check, solution=solution)
    if json_output:
        from lab.render.run_model import step_model

        common.print_json(step_model(result))
    else:
        print_result(result, verbose=verbose)
    # "skipped" (a --check with nothing to verify) and "challenge" (the learner's turn) are not
    # failures; failed and error are.
    if result.status in ("failed", "error"):
        if was_interrupted and not check:
            say_the_last_run_was_interrupted(number)
        elif ahead and not (check or solution):
            say_the_lab_is_past(number, ahead)
        raise typer.Exit(common.ExitCode.FAILED)


def say_the_last_run_was_interrupted(number: int) -> None:
    """Ctrl-C stopped this step's last run part-way; a run over that half-done state fails for
    that reason alone (step 13 finds the membership it removes already gone). Say so."""
    say_run_it_again(
        number,
        f"note: the last run of step {number} was interrupted part-way, so the lab still holds "
        "half of it.",
    )


def later_step_passed(results: dict[int, dict[str, Any]], number: int) -> int:
    """The highest step after ``number`` that passed since the last reset (0 if none)."""
    return max(
        (n for n, r in results.items() if n > number and r.get("status") == "passed"), default=0
    )


def say_the_lab_is_past(number: int, ahead: int) -> None:
    """A step checks the state right before it; run again on a lab that went on (step 1 after
    `make run` finds step 14's deletions), it fails for that reason alone. Say so, and how to
    run it as it was meant, instead of leaving the learner to doubt the lab."""
    say_run_it_again(
        number,
        f"note: this lab has gone on to step {ahead} since the last reset, and step {number} "
        "checks the state right before it.",
    )


def say_run_it_again(number: int, why: str) -> None:
    """``why``, then the one command that runs step ``number`` as it was meant: from a reset to
    the state right before it."""
    again = common.lab_command(f"reset --to {number}")
    then = common.lab_command(f"step {number}")
    console = common.err()
    console.print(f"{why} To run it again as it was meant:")
    # soft_wrap: one line for the terminal to wrap, so the command pastes back whole.
    console.print(f"  {again} && {then}", soft_wrap=True, highlight=False)


def run_step_mode(session: StepSession, step: Step, *, check: bool, solution: bool) -> StepResult:
    number = step.number
    if check:
        result = session.check(step)
    elif solution:
        if not step.solution:
            common.fail(f"step {number} has no solution to apply", f"run `lab step {number}`", 2)
        result = session.solution(step)
    else:
        result = session.run(step, solutions=False)  # a challenge stops before its answer
    return result


@app.command("captured")
def captured(
    name: str = typer.Argument(..., help="A value an earlier step captured, e.g. id_token."),
) -> None:
    """Print a value an earlier step captured (what `lab step N --manual` scripts read)."""
    from lab.steps.captures import load_captures

    values, _redacted = load_captures(common.settings())
    if name not in values:
        known = ", ".join(sorted(values)) or "none yet"
        common.fail(
            f"no step has captured {name!r} yet (captured: {known})",
            "run the earlier steps first, e.g. `lab reset --to N`",
            common.ExitCode.FAILED,
        )
    value = values[name]
    text = value if isinstance(value, str) else json.dumps(value)
    if sys.stdout.isatty():
        # A value a server sent, read on a terminal: its control characters are shown as
        # escapes. A pipe or $(lab captured …) gets the value unescaped.
        from lab.render.shown import shown

        text = shown(text)
    typer.echo(text)


def show_hint(step: Step) -> None:
    if not step.hint:
        common.fail(
            f"step {step.number} has no hint", f"read it with `lab step {step.number} --manual`", 2
        )
    from lab.render.terminal import render_prose

    console = common.out()
    console.print(f"[bold]Hint for step {step.number}[/] — {step.title}")
    for block in render_prose(step.hint.strip()):
        console.print(block)


@app.command("run")
def run_steps(
    start: int = typer.Option(1, "--from", min=1, help="First step to run."),
    end: int | None = typer.Option(
        None, "--to", min=1, help="Last step to run (default: the last)."
    ),
) -> None:
    """Reset to the state just before --from, then run the steps in order; stop at a failure.

    Every action runs, a challenge's answer (its solution actions) included.
    """

    all_steps = load_all_steps()
    steps = select(all_steps, start, end)
    session = StepSession.open()
    with lab_lock(session.settings.home, command_line()):
        run_in_order(session, all_steps, steps, start)


def run_in_order(
    session: StepSession, all_steps: list[Step], steps: list[Step], start: int
) -> None:
    from lab.cli.engine import preload_step_modules
    from lab.state import reset_to_step

    preload_step_modules()
    if start > 1:
        common.err().print(f"Getting the lab ready for step {start}…")
    reset_to_step(
        session.state, start, run_step=lambda n: session.run(find_step(all_steps, n)).passed
    )
    session.results.clear()
    for step in steps:
        with step_progress(common.err()) as progress:
            progress.started(step)
            result = session.run(step)
        print_result(result)
        if not result.passed:
            again = common.lab_command(f"step {step.number}")
            common.err().print(
                f"Step {step.number} did not pass. Read it again with [bold]{again}[/] "
                f"or ask for [bold]{again} --hint[/]."
            )
            raise typer.Exit(common.ExitCode.FAILED)
    common.err().print(f"[green]✓[/] {len(steps)} step(s) passed.")


def select(steps: Sequence[Step], start: int, end: int | None) -> list[Step]:
    last = end if end is not None else max(s.number for s in steps)
    chosen = [s for s in steps if start <= s.number <= last]
    if not chosen:
        common.fail(
            f"no steps between {start} and {last}", "see `lab steps`", common.ExitCode.USAGE
        )
    return chosen


@app.command("verify")
def verify(
    json_path: str | None = typer.Option(
        None, "--json", help="Write the JSON report here (- for stdout)."
    ),
    junit_path: str | None = typer.Option(None, "--junit", help="Write a JUnit XML report here."),
) -> None:
    """Run every step from a fresh baseline and exit 1 if any expectation differs."""
    for path, option in ((json_path, "--json"), (junit_path, "--junit")):
        if path is not None:
            common.check_output_path(path, option)
    steps = load_all_steps()
    session = StepSession.open()
    with lab_lock(session.settings.home, command_line()):
        verify_all(session, steps, json_path, junit_path)


def verify_all(
    session: StepSession, steps: list[Step], json_path: str | None, junit_path: str | None
) -> None:
    from lab.cli.engine import preload_step_modules, report_json, report_junit
    from lab.state import reset_to_baseline

    preload_step_modules()
    reset_to_baseline(session.state)
    quiet = json_path == "-"
    console = common.err() if quiet else common.out()
    with step_progress(common.err()) as progress:
        for step in steps:
            progress.started(step)
            result = session.run(step)
            with progress.paused():  # the spinner line is cleared before a result line is printed
                print_verify_line(console, result)
                if not result.passed and result.status != "skipped" and not quiet:
                    print_result(result)
    results = session.results
    if json_path:
        common.write_output(json_path, report_json(results, served_by(session)))
    if junit_path:
        common.write_output(junit_path, report_junit(results))
    # A skip is a step whose declared requirement the running IdP lacks (it says which).
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if not r.passed and r.status != "skipped"]
    passed = len(results) - len(failed) - len(skipped)
    summary = f"{passed}/{len(results)} steps passed"
    if skipped:
        summary += f", {len(skipped)} skipped ({', '.join(str(r.number) for r in skipped)})"
    if failed:
        common.err().print(
            f"[red]✗[/] {summary}; failed: {', '.join(str(r.number) for r in failed)}"
        )
        raise typer.Exit(common.ExitCode.FAILED)
    common.err().print(f"[green]✓[/] {summary}")


def served_by(session: StepSession) -> dict[str, str]:
    """Which backend and which IdP served this run, the IdP asked over HTTP (not configured)."""
    from lab.backends.keycloak_process import server_identity

    return {"backend": session.backend.name, "idp": server_identity(session.endpoints.idp_base)}


def print_verify_line(console: Console, result: StepResult) -> None:
    mark = "[green]✓[/]" if result.passed else "[red]✗[/]"
    if result.status == "skipped":
        mark = "[yellow]-[/]"
    extra = f" — {result.message}" if result.message and not result.passed else ""
    console.print(
        f"{mark} {result.number:2d} {result.slug} ({result.duration_ms:.0f} ms){extra}",
        highlight=False,
    )


class StepProgress:
    """A spinner naming the running step (terminal only; CI logs get the result lines).

    Results are printed on stdout while the spinner lives on stderr; ``paused()`` clears the
    spinner first, so no "⠹ step 1: …" text is left in front of a result line.
    """

    def __init__(self, status: Any = None) -> None:
        self.status = status

    def started(self, step: Step) -> None:
        if self.status is not None:
            self.status.update(f"step {step.number}: {step.title}")

    @contextmanager
    def paused(self) -> Iterator[None]:
        if self.status is None:
            yield
            return
        self.status.stop()
        try:
            yield
        finally:
            self.status.start()


@contextmanager
def step_progress(console: Console) -> Iterator[StepProgress]:
    if not console.is_terminal:
        yield StepProgress()
        return
    with console.status("starting") as status:
        yield StepProgress(status)
