"""The PDP fixtures (a real PDP on loopback, the tutorial's world built through ZMS) for the
security suite's PDP-level cases; the full lab is in :mod:`tests.security.fullstack`."""

from tests.idp.conftest import idp, write_realm
from tests.pdp.conftest import pdp_lab, world

__all__ = ["idp", "pdp_lab", "world", "write_realm"]
