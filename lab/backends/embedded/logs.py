"""Where the runtime's parts log: one file per part room under ``$LAB_HOME/logs``."""

from __future__ import annotations

import sys

from lab.config import Settings

#: Log files under ``$LAB_HOME/logs``: one per part room, plus the runtime's own.
LOG_FILES: dict[str, str] = {
    "embedded": "embedded.log",
    "idp": "idp.log",
    "pdp": "pdp.log",
    "docapi": "docapi.log",
    "mcpserver": "mcpserver.log",
}

#: Real Keycloak's console output (``lab logs idp`` when ``LAB_IDP=keycloak``).
KEYCLOAK_LOG = "keycloak.log"

#: Which log file each part (and a few friendly aliases) writes to.
LOG_ALIASES: dict[str, str] = {
    "zms": "pdp",
    "zts": "pdp",
    "docapi_protected": "docapi",
    "docapi_unprotected": "docapi",
    "mcp": "mcpserver",
}

#: Logger names each log file collects (``logging.getLogger("lab.<part>")``, contracts §0).
LOGGERS: dict[str, tuple[str, ...]] = {
    "idp": ("lab.idp",),
    "pdp": ("lab.pdp", "lab.policy"),
    "docapi": ("lab.docapi",),
    "mcpserver": ("lab.mcpserver", "mcp"),
}

#: Libraries whose INFO lines repeat what a part logs already: httpx writes "HTTP Request: ..."
#: for every call a part makes (the MCP server's token exchange and document API call, each
#: resource server's policy refresh): two or three lines a chain in ``embedded.log`` (~7 µs
#: each to format, escape and write), while the part's own line says what the call was for
#: (its jti, the decision). They show from ``LAB_LOG_LEVEL=debug`` on.
LIBRARY_INFO_LOGGERS: tuple[str, ...] = ("httpx",)


def configure_logging(settings: Settings) -> None:
    """Runtime messages to stderr (``embedded.log``); each room's loggers to its own file."""
    import logging

    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    # Every token request logs a line. No format here shows a thread, a process or a source
    # line, so collecting them for each record is wasted (the logging HOWTO's "Optimization":
    # the caller's frame walk alone is about a third of a record's cost).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    from lab.render.shown import ShownFormatter

    formatter = ShownFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    for name in LIBRARY_INFO_LOGGERS:
        logging.getLogger(name).setLevel(level if level < logging.INFO else logging.WARNING)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.addHandler(stderr)
    for room, names in LOGGERS.items():
        handler = logging.FileHandler(settings.logs_dir / LOG_FILES[room], encoding="utf-8")
        handler.setFormatter(formatter)
        for name in names:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            logger.propagate = False
            logger.setLevel(level)
