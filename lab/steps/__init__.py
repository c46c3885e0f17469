"""The step engine: load ``steps/NN-slug.md`` files, run their actions, check expectations.

Entry points used by the CLI: :func:`load_steps`, :class:`lab.steps.engine.RunContext`,
:func:`lab.steps.engine.run_step` / ``check_step`` / ``apply_solution`` and
:func:`lab.steps.manual.manual_commands`.
"""

from lab.steps.load import StepFileError, load_step, load_steps
from lab.steps.model import ActionResult, CheckResult, Step, StepResult, TokenSeen

__all__ = [
    "ActionResult",
    "CheckResult",
    "Step",
    "StepFileError",
    "StepResult",
    "TokenSeen",
    "load_step",
    "load_steps",
]
