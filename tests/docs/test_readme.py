"""The README a learner reads first (issue #17): the commands it prints work in a fresh shell,
and the F1/F2/F3 labels the steps use from step 1 are explained before the steps."""

from __future__ import annotations

import re

from tests.stack import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_says_how_to_run_lab_after_make_run_without_an_activated_venv() -> None:
    # `make run` does not touch the learner's shell: plain `lab` is "command not found" there.
    assert ".venv/bin/lab step 1" in README
    assert "source .venv/bin/activate" in README
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/lab step 1" in run  # what `make run` prints last is a command that works


def test_readme_explains_f1_f2_f3_before_the_steps() -> None:
    steps_heading = README.index("## The steps")
    for label, meaning in (("F1", "no token"), ("F2", "without membership"), ("F3", "delegation")):
        explained = re.search(rf"\*\*{label} — [^*]*{meaning}", README)
        assert explained is not None and explained.start() < steps_heading, label
