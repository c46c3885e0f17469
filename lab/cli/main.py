"""The ``lab`` command's entry point. The Typer app itself lives in :mod:`lab.cli.app`.

``lab up`` must be healthy in about a second, and most of that is the runtime process starting
its parts. So for a plain ``lab up`` on the embedded backend, :func:`run` starts that process
*before* importing the CLI framework; the ``up`` command then finds it running and only waits
for health. Anything unusual (another backend, a busy port, a bad setting) skips the head start
and the ``up`` command reports it as usual.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Command lines that get the head start (anything else runs exactly as written).
HEAD_START_ARGS = (["up"], ["up", "--json"])


def __getattr__(name: str) -> Any:
    """``from lab.cli.main import app`` still works (PEP 562), without importing Typer early."""
    if name == "app":
        from lab.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def start_runtime_early(args: list[str]) -> None:
    """Spawn the embedded runtime for ``lab up`` before the CLI itself has loaded."""
    if args not in HEAD_START_ARGS:
        return
    from lab.backends.base import BackendError
    from lab.config import Settings, SettingsError

    try:
        settings = Settings.from_env()
        if settings.backend != "embedded" or _runtime_backend(settings) not in (None, "embedded"):
            return
        if settings.idp != "embedded":
            return  # real Keycloak: `up` checks Java and the IdP port before starting anything
        from lab.backends.embedded import EmbeddedBackend

        EmbeddedBackend(settings).start()
    except (BackendError, SettingsError, OSError):
        return  # the `up` command meets the same problem and reports it properly


def _runtime_backend(settings: Any) -> str | None:
    import json

    if os.environ.get("LAB_BACKEND"):
        return None  # an explicit choice wins over whatever is recorded
    try:
        return json.loads(settings.runtime_file.read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def run() -> None:
    """Console-script entry point (``lab``)."""
    from lab.startup import fewer_gc_passes, skip_httpx_cli

    fewer_gc_passes()
    skip_httpx_cli()
    from lab.cli.part_logs import keep_part_logs_off_the_screen

    keep_part_logs_off_the_screen(sys.argv[1:])
    start_runtime_early(sys.argv[1:])
    from lab.cli.reset_run import plain_reset

    code = plain_reset(sys.argv[1:])  # `lab reset [--to N]` without Typer's start-up
    if code is not None:
        sys.exit(code)
    from lab.cli.app import app

    app(prog_name="lab")


if __name__ == "__main__":
    run()
