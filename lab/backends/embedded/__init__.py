"""The embedded backend: every part of the lab in one local background process.

``lab up`` binds every port in the CLI process first (so a busy port is reported at once, naming
the ``LAB_*_PORT`` variable that moves it), then starts ``python -m lab.backends.embedded`` with
those listening sockets inherited. That process serves each part with its own uvicorn server,
all in one event loop (the PDP app on both the ZMS and the ZTS socket), and logs to
``$LAB_HOME/logs``. A part whose module is missing or fails to build is served by a stand-in that
answers ``/healthz`` with 503 and the error, so ``lab status`` names the broken part instead of
the whole lab failing to start.

The CLI process never imports a part: imports stay light so ``lab up`` is healthy in about a second.

With ``LAB_IDP=keycloak`` (``lab up --idp keycloak``) the IdP port is served by real Keycloak, a
second process run by :mod:`lab.backends.keycloak_process`; the runtime serves the other parts.
"""

from lab.backends.embedded.backend import EmbeddedBackend

__all__ = ["EmbeddedBackend"]
