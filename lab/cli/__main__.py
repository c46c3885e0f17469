"""``python -m lab.cli`` is ``lab`` (tests and ``tests/stack.py`` use it)."""

from lab.cli.main import run

run()
