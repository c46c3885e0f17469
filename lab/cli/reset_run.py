"""What ``lab reset [--to N]`` does, without Typer: the plain forms run from here directly.

``lab reset`` is a command people run between steps, so its start-up counts (issue #21): Typer
and click are ~30–40 ms of its ~0.15 s of CPU. :func:`lab.cli.main.run` calls
:func:`reset_lab` for exactly ``lab reset`` and ``lab reset --to N`` (N a plain decimal ≥ 1);
every other form (``--json``, ``--hard``, ``--to=N``, global options, ``--help``, a bad value)
goes through Typer, whose command (:mod:`lab.cli.reset`) calls the same function. Failures are
reported by the same ``common.describe_error`` / ``report_error`` either way.
"""

from __future__ import annotations

import re
from typing import Any

from lab.cli import common

#: What Typer takes as a plain int (``lab.cli.lazy_params``): no sign, no leading zero.
_STEP_NUMBER = re.compile(r"[1-9][0-9]*")


def reset_lab(to: int | None, json_output: bool) -> None:
    """Back to the baseline, or to the state just before step ``to``."""
    from lab.cli.engine import StepSession, find_step, load_all_steps
    from lab.state import reset_to_step

    session = StepSession.open()
    runner = None
    if to is not None and to > 1:
        from lab.steps.files import step_numbers

        numbers = step_numbers()
        if to not in numbers:
            common.fail(
                f"there is no step {to}",
                f"choose one of: {', '.join(map(str, numbers))}",
                common.ExitCode.USAGE,
            )
        # The step files are parsed only when a step must be replayed: a reset served by a
        # checkpoint (the usual case) never reads them.
        loaded: list[Any] = []

        def runner(number: int) -> bool:
            if not loaded:
                loaded.extend(load_all_steps())
            return session.run(find_step(loaded, number)).passed

    from lab.cli.lock import command_line, lab_lock, note_activity

    session.announce_interrupts = False  # a step replayed here is part of the reset

    with lab_lock(session.settings.home, command_line()):
        note_activity(f"reset {to or 1}")
        try:
            outcome = reset_to_step(session.state, to or 1, run_step=runner)
        except KeyboardInterrupt:
            say_the_reset_was_interrupted(session.settings, to or 1)
            raise
    if json_output:
        common.print_json(
            {
                "ready_for_step": outcome.target,
                "restored_from": outcome.restored_from,
                "replayed": list(outcome.replayed),
                "duration_ms": round(outcome.duration_ms, 1),
            }
        )
        return
    console = common.err()
    if outcome.target == 1:
        console.print(f"Back to the baseline in {outcome.duration_ms:.0f} ms.")
    else:
        source = (
            "the baseline"
            if outcome.restored_from == 0
            else f"the checkpoint after step {outcome.restored_from}"
        )
        replayed = (
            f", then replayed step(s) {', '.join(map(str, outcome.replayed))}"
            if outcome.replayed
            else ""
        )
        console.print(f"Restored {source}{replayed} in {outcome.duration_ms:.0f} ms.")
    console.print(f"Next: [bold]{common.lab_command(f'step {outcome.target}')}[/]")


def say_the_reset_was_interrupted(settings: Any, target: int) -> None:
    """Ctrl-C during a reset leaves the lab part-way between two states (a PDP half restored, a
    replay half run). Record it against the step the reset was for, so `lab` and `lab steps`
    point back at the same reset, and say so before the exit (130)."""
    from lab.state import mark_interrupted

    mark_interrupted(settings, target)
    again = common.lab_command("reset" if target == 1 else f"reset --to {target}")
    aim = "back to the baseline" if target == 1 else f"to step {target}"
    console = common.err()
    console.print(f"\nInterrupted while resetting {aim}: the lab is part-way there.")
    console.print(f"Next: {again}", soft_wrap=True, highlight=False)


def plain_reset(args: list[str]) -> int | None:
    """Run ``lab reset`` / ``lab reset --to N`` without Typer; the exit code, or ``None`` when
    ``args`` is any other command line (Typer's to parse)."""
    if args == ["reset"]:
        to = None
    elif len(args) == 3 and args[:2] == ["reset", "--to"] and _STEP_NUMBER.fullmatch(args[2]):
        to = int(args[2])
    else:
        return None
    try:
        reset_lab(to, json_output=False)
    except KeyboardInterrupt:
        return 130  # as Typer's commands exit on Ctrl-C; the reset has said where it stopped
    except Exception as exc:  # noqa: BLE001 - as common.handled_errors: a sentence, not a trace
        message, fix, code = common.describe_error(exc)
        common.report_error(message, fix, common.error_kind(exc))
        return code
    return 0
