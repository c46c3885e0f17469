"""The PDP fixtures (a real PDP on loopback, the tutorial's world built through ZMS) for the
security suite's PDP-level cases; the full lab is in :mod:`tests.security.fullstack`. Also
``decodes``: every token pyjwt fully verifies, for the verified-token cache's tests."""

from collections.abc import Callable
from typing import Any

import jwt
import pytest

from lab.oauth import jose
from tests.idp.conftest import idp, write_realm
from tests.pdp.conftest import pdp_lab, world

__all__ = ["decodes", "idp", "pdp_lab", "world", "write_realm"]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token pyjwt fully verifies (signature and claims) in this process: a token the
    verified-token cache answers is not in it."""
    calls: list[str] = []
    real: Callable[..., Any] = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jose.jwt, "decode", counting)
    return calls
