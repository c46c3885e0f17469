"""Run the IdP alone: ``python -m lab.idp [realm-file]`` (port from ``LAB_IDP_PORT``, default 9090).

Handy for trying the login page in a browser; ``lab up`` runs it together with the other parts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import uvicorn

from lab.config import Settings, SettingsError
from lab.idp.app import DEFAULT_REALM_FILE, create_app
from lab.idp.realm import RealmFileError
from lab.serving import PortInUse, bind_socket, uvicorn_config


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    realm_file = Path(argv[0]) if argv else DEFAULT_REALM_FILE
    try:
        settings = Settings.from_env()
        app = create_app(settings, realm_file)
        sock = bind_socket(settings.host, settings.ports["idp"], settings.port_variable("idp"))
    except (RealmFileError, SettingsError, PortInUse) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(f"IdP issuer {settings.endpoints.idp_issuer}", file=sys.stderr)
    server = uvicorn.Server(uvicorn_config(app, log_level="info"))
    asyncio.run(server.serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
