"""Where the step files are and which numbers exist, from their names alone (nothing parsed).

Kept apart from :mod:`lab.steps.load` so ``lab reset --to N`` and ``lab up`` can check a step
number without importing YAML and the step model.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STEPS_DIR = REPO_ROOT / "steps"
FILE_NAME = re.compile(r"^(\d{2})-([a-z0-9][a-z0-9-]*)\.md$")


def step_numbers(directory: Path | None = None) -> list[int]:
    """The step numbers present, from the file names alone (nothing parsed: ``lab reset --to N``
    checks N with it and reads the files only if it has steps to replay)."""
    directory = DEFAULT_STEPS_DIR if directory is None else Path(directory)
    found = (FILE_NAME.match(p.name) for p in directory.glob("*.md"))
    return sorted({int(m.group(1)) for m in found if m})
