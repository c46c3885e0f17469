"""``lab`` with no command: where the learner is and the one command to run next."""

from __future__ import annotations

from lab.cli import common


def next_command(
    running: bool, healthy: bool, results: dict[int, dict], numbers: list[int]
) -> tuple[str, str]:
    """(situation, command) for the learner's position."""
    from lab.state import last_passed_step

    if not running:
        above = common.lab_running_above()
        if above is not None:
            return f"No lab runs from here, but one runs from {above}.", f"cd {above}"
        return "The lab is not running.", "lab up"
    if not healthy:
        return "The lab is running, but some parts are not healthy.", "lab status"
    if not numbers:
        return "The lab is up, but no step files were found.", "lab doctor"
    interrupted = sorted(n for n, r in results.items() if r.get("status") == "interrupted")
    if interrupted:
        first = interrupted[0]
        reset = results[first].get("during") == "reset"
        what = f"the reset to step {first}" if reset else f"step {first}"
        situation = f"The lab is up; {what} was interrupted part-way. Start it again clean:"
        return situation, f"lab reset --to {first}"
    done = last_passed_step(results)
    upcoming = [n for n in numbers if n > done]
    if not upcoming:
        return f"The lab is up and all {len(numbers)} steps passed.", "lab verify"
    nxt = upcoming[0]
    if results.get(nxt, {}).get("status") in ("failed", "error"):
        situation = f"The lab is up; step {nxt} did not pass last time. Start it again clean:"
        return situation, f"lab reset --to {nxt}"
    if results.get(nxt, {}).get("status") == "challenge":
        situation = f"The lab is up; step {nxt} is a challenge: your turn. Fix it, then check:"
        return situation, f"lab step {nxt} --check"
    if done == 0:
        return "The lab is up and no step has passed yet.", "lab step 1"
    passed = "step 1 passed" if done == 1 else f"steps 1–{done} passed"
    return f"The lab is up; {passed}.", f"lab step {nxt}"


def show_where() -> None:
    from lab.cli.lock import recover_killed_command
    from lab.state import load_results

    settings = common.settings()
    recover_killed_command(settings.home)
    chosen = common.backend(settings)
    status = chosen.status()
    from lab.steps.files import step_numbers

    numbers = step_numbers()  # from the file names: nothing parsed (a broken file still counts)
    situation, command = next_command(
        status.running, status.healthy, load_results(settings), numbers
    )
    console = common.out()
    console.print(f"{situation} (backend: {chosen.name})")
    program = common.lab_program()
    shown = f"{program}{command[len('lab') :]}" if command.startswith("lab") else command
    console.print(f"Next: [bold]{shown}[/]")
    console.print(f"All commands: {program} --help", style="dim")
