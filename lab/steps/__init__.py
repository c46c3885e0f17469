"""The step engine: load ``steps/NN-slug.md`` files, run their actions, check expectations.

Entry points used by the CLI: :func:`load_steps`, :class:`lab.steps.engine.RunContext`,
:func:`lab.steps.engine.run_step` / ``check_step`` / ``apply_solution`` and
:func:`lab.steps.manual.manual_commands`.

The names below load on first use (PEP 562): ``lab reset --to N`` and ``lab up`` only list the
step files (:mod:`lab.steps.files`) and must not pay for YAML and the model (issue #21).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.steps.load import StepFileError, load_step, load_steps
    from lab.steps.model import ActionResult, CheckResult, Step, StepResult, TokenSeen

_EXPORTS = {
    "ActionResult": "lab.steps.model",
    "CheckResult": "lab.steps.model",
    "Step": "lab.steps.model",
    "StepResult": "lab.steps.model",
    "TokenSeen": "lab.steps.model",
    "StepFileError": "lab.steps.load",
    "load_step": "lab.steps.load",
    "load_steps": "lab.steps.load",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
