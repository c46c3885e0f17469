"""The CLI's one doorway to the step engine (lab.steps) and its renderers (lab.render).

Commands that run steps go through :class:`StepSession`: it loads the steps, builds the engine's
``RunContext`` against the running backend, keeps captures in ``$LAB_HOME/captures.json``, records
each outcome for ``lab steps`` and takes a checkpoint after each passed step (for ``lab reset``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.cli import common

if TYPE_CHECKING:
    from lab.backends.base import Backend
    from lab.config import Endpoints, Settings
    from lab.state import StateClient
    from lab.steps.model import Step, StepResult


def load_all_steps() -> list[Step]:
    """Every step file under ``steps/``, in order; exit 3 if the engine is missing."""
    try:
        from lab.steps import load_steps
    except ImportError as exc:
        common.fail(
            f"the step engine cannot be loaded ({exc})",
            "reinstall with `make setup`",
        )
    steps = load_steps()
    if not steps:
        common.fail("there are no step files under steps/", "run lab from the project checkout")
    return list(steps)


def find_step(steps: Sequence[Step], number: int) -> Step:
    for step in steps:
        if step.number == number:
            return step
    numbers = ", ".join(str(s.number) for s in steps)
    common.fail(f"there is no step {number}", f"choose one of: {numbers}", common.ExitCode.USAGE)


@dataclass
class StepSession:
    """One CLI run of one or more steps against the running backend."""

    settings: Settings
    backend: Backend
    endpoints: Endpoints
    checkpoints: bool = True
    results: list[StepResult] = field(default_factory=list)
    #: Say "interrupted in the middle of step N" on Ctrl-C (a reset says its own sentence).
    announce_interrupts: bool = True
    _state: StateClient | None = None

    @classmethod
    def open(cls, checkpoints: bool = True) -> StepSession:
        settings = common.settings()
        chosen = common.backend(settings)
        return cls(settings, chosen, chosen.endpoints(), checkpoints)

    @property
    def state(self) -> StateClient:
        if self._state is None:
            from lab.state import StateClient

            self._state = StateClient(self.settings, self.endpoints, self.backend)
        return self._state

    def context(self) -> Any:
        """A fresh engine context; it loads and saves ``$LAB_HOME/captures.json`` itself."""
        from lab.steps.engine import RunContext

        return RunContext(self.settings, self.endpoints, self.backend)

    def _finish(self, step: Step, result: StepResult, record: bool = True) -> StepResult:
        from lab.state import record_result, save_checkpoint

        if result.passed:
            report_to_room(self.backend, step)
        if record:
            record_result(self.settings, step.number, step.slug, result.status, result.duration_ms)
            keep_run_model(self.settings, result)
            if result.passed and self.checkpoints:
                save_checkpoint(self.state, step.number)
        self.results.append(result)
        return result

    def run(self, step: Step, solutions: bool = True) -> StepResult:
        """Run ``step``; ``solutions=False`` (a plain ``lab step N``) leaves a challenge to do."""
        from lab.steps.engine import run_step

        context = self.context()
        with interrupt_recorded(self.settings, step, announce=self.announce_interrupts):
            result = run_step(step, context, solutions=solutions)
        return self._finish(step, result)

    def check(self, step: Step) -> StepResult:
        from lab.steps.engine import check_step

        context = self.context()
        return self._finish(step, check_step(step, context), record=False)

    def solution(self, step: Step) -> StepResult:
        from lab.steps.engine import apply_solution, has_solution_actions

        context = self.context()
        # A step with `solution: true` actions runs whole: its outcome is the step's outcome.
        whole = has_solution_actions(step)
        with interrupt_recorded(self.settings, step, announce=self.announce_interrupts):
            result = apply_solution(step, context)
        return self._finish(step, result, record=whole)

    def manual(self, step: Step) -> str:
        from lab.steps.manual import manual_commands

        snippets = manual_commands(step, self.context())
        program = common.lab_program()
        if program != "lab":
            # `lab` is not on PATH in this shell: the pasted script defines it first.
            snippets.insert(0, f'lab() {{ "{Path(program).absolute()}" "$@"; }}')
        return "\n\n".join(snippets)


#: The status a step gets when Ctrl-C stops it part-way (``lab steps``, ``lab``, ``lab ui``).
INTERRUPTED = "interrupted"


@contextmanager
def interrupt_recorded(settings: Settings, step: Step, announce: bool = True) -> Iterator[None]:
    """Ctrl-C in the middle of a step leaves the lab holding half of it (step 13 has removed the
    membership but not captured what it checks later), so running the step again fails for that
    reason alone. Record the step as interrupted, so ``lab`` and the step's next failure say to
    reset to it first, and say so now, before the exit (130) the interrupt turns into."""
    import time

    from lab.cli.lock import note_activity
    from lab.state import record_result

    started = time.perf_counter()
    if announce:  # a reset's replay is the reset's activity, not this step's
        note_activity(f"step {step.number}")
    try:
        yield
        if announce:
            note_activity("")
    except KeyboardInterrupt:
        if not announce:
            raise  # the reset records its own interruption (reset_run: mark_interrupted)
        elapsed_ms = (time.perf_counter() - started) * 1000
        record_result(settings, step.number, step.slug, INTERRUPTED, elapsed_ms)
        again = common.lab_command(f"reset --to {step.number}")
        then = common.lab_command(f"step {step.number}")
        console = common.err()
        console.print(
            f"\nInterrupted in the middle of step {step.number}: the lab may hold half of it.",
            highlight=False,
        )
        console.print(f"Next: {again} && {then}", soft_wrap=True, highlight=False)
        raise


def report_to_room(backend: Backend, step: Step) -> None:
    """In a workshop room, tell the instructor's ``lab room status`` this step passed.

    Best effort: the learner's step has passed whatever happens here, so a failure to record it
    is one warning line, never a failed step.
    """
    recorder = getattr(backend, "record_verified_step", None)
    if recorder is None:
        return
    from lab.backends.base import BackendError

    try:
        recorder(step.number, step.slug)
    except (BackendError, OSError, ValueError) as exc:
        common.err().print(
            f"[yellow]![/] step {step.number} passed but the room status was not updated: {exc}",
            highlight=False,
        )
    except Exception as exc:  # noqa: BLE001 - the kubernetes client raises its own ApiException
        common.err().print(
            f"[yellow]![/] step {step.number} passed but the room status was not updated: "
            f"{type(exc).__name__}",
            highlight=False,
        )


#: Imported by the command's own thread before the background import starts, so the two threads
#: never import the same module at once (Python refuses a concurrent circular import).
IMPORTED_FIRST = ("httpx", "lab.oauth.jose", "lab.steps.engine")
#: What later steps need and the first do not: the agent and the MCP SDK (most of a second).
IMPORTED_IN_BACKGROUND = ("lab.agent.chain",)


def preload_step_modules() -> None:
    """Start importing the agent and the MCP SDK while the first steps wait on the network.

    ``lab verify`` and ``lab run`` reach the MCP server only from step 5; until then the command
    mostly waits for the lab's answers, which leaves the interpreter idle (issue #21). A failed
    import is left for the step that needs the module: it imports it again and reports why.
    """
    import importlib
    import threading

    for name in IMPORTED_FIRST:
        importlib.import_module(name)

    def load() -> None:
        for name in IMPORTED_IN_BACKGROUND:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - see the docstring
                return

    threading.Thread(target=load, name="lab-preload", daemon=True).start()


def keep_run_model(settings: Settings, result: StepResult) -> None:
    """Save the run's model for ``lab ui`` (the same record ``lab step N --json`` prints)."""
    from lab.render.run_model import step_model
    from lab.state import save_run_model

    save_run_model(settings, result.number, step_model(result))


def print_result(result: StepResult, verbose: bool = False) -> None:
    from lab.render.terminal import print_step_result

    print_step_result(common.out(), result, verbose=verbose, program=common.lab_program())


def report_json(results: Sequence[StepResult], served_by: Mapping[str, str] | None = None) -> str:
    """The step records; ``served_by`` (backend and IdP as the servers name themselves) is
    added to each record, so a record read alone still says what it ran against."""
    import json

    from lab.render.report import to_json

    data = to_json(list(results))
    if served_by:
        for record in data:
            record["served_by"] = dict(served_by)
    return data if isinstance(data, str) else json.dumps(data, indent=2, default=str)


def report_junit(results: Sequence[StepResult]) -> str:
    from lab.render.report import to_junit

    return to_junit(list(results))
