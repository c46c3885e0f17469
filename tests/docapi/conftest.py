from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.docapi.app import create_app
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey
from tests.docapi.zts_standin import ZtsStandIn


@dataclass
class DocApi:
    protected: str
    unprotected: str
    zts: ZtsStandIn
    admin_key: SigningKey

    def admin_headers(self, base_url: str) -> dict[str, str]:
        return {
            "Authorization": "Bearer "
            + make_admin_assertion(ADMIN_PRINCIPAL, self.admin_key, base_url)
        }


@pytest.fixture
def zts(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> ZtsStandIn:
    standin = ZtsStandIn(lab_settings)
    serve(standin.app(), reserved_sockets["zts"])
    return standin


@pytest.fixture
def docapi(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    zts: ZtsStandIn,
) -> DocApi:
    admin_key = SigningKey.load_or_create(lab_settings.key_file(ADMIN_PRINCIPAL))
    protected = serve(
        create_app(lab_settings, protected=True), reserved_sockets["docapi_protected"]
    )
    unprotected = serve(
        create_app(lab_settings, protected=False), reserved_sockets["docapi_unprotected"]
    )
    return DocApi(protected=protected, unprotected=unprotected, zts=zts, admin_key=admin_key)
