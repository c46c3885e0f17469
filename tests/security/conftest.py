"""The PDP fixtures (a real PDP on loopback, the tutorial's world built through ZMS) for the
security suite's PDP-level cases; the full lab is in :mod:`tests.security.fullstack`."""

from tests.pdp.conftest import pdp_lab, world

__all__ = ["pdp_lab", "world"]
