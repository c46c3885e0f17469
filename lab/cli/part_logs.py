"""Where the lab's own loggers write while a ``lab`` command runs in the learner's terminal.

Some commands run parts in-process: step 20 runs the AI Client Gateway, `lab agent` the agent.
Those parts log warnings meant for an operator (a tool error the MCP server answered, a refused
hop). Without a handler, Python's last-resort handler prints them on stderr, where they break
into the step's own report — which already says what went wrong, in 80 columns — with an
unwrapped duplicate. So the command sends the ``lab`` loggers to ``$LAB_HOME/logs/cli.log``
(owner-only, opened on the first record) and nothing of theirs reaches the screen. `lab gateway`
is the exception: an MCP stdio server logs to stderr by contract, and it configures that itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

#: The file, under ``$LAB_HOME/logs``, that in-process parts of a command log to.
CLI_LOG = "cli.log"
#: Commands that set up their own logging.
OWN_LOGGING = frozenset({"gateway"})


class OwnerOnlyFileHandler(logging.FileHandler):
    """A file handler that makes its directory (0700) and file (0600) when the first record
    comes, so a command that logs nothing creates nothing."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's own signature
        path = Path(self.baseFilename)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", encoding=self.encoding or "utf-8", closefd=True)  # noqa: SIM115


def keep_part_logs_off_the_screen(args: list[str], environ: dict[str, str] | None = None) -> None:
    """Route the ``lab`` loggers of this command to the home's ``cli.log``."""
    command = next((arg for arg in args if not arg.startswith("-")), "")
    if command in OWN_LOGGING:
        return
    env = os.environ if environ is None else environ
    home = Path(env.get("LAB_HOME") or ".lab")  # empty is unset, as in lab.config
    handler = OwnerOnlyFileHandler(home / "logs" / CLI_LOG, delay=True, encoding="utf-8")
    from lab.render.shown import ShownFormatter

    handler.setFormatter(ShownFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("lab")
    logger.addHandler(handler)
    logger.propagate = False  # never on to the root logger's last-resort stderr handler
