"""A real PDP on loopback (same app on the ZMS and ZTS sockets), a stand-in IdP JWKS, and the
lab's world (domains api/human/ai, services, roles, policies) built through ZMS over HTTP."""

from __future__ import annotations

import gc
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import (
    SigningKey,
    make_client_assertion,
    new_jti,
    now,
    public_pem,
    ybase64_encode,
)
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)
from lab.pdp import store as pdp_store
from lab.pdp.app import create_app
from lab.pdp.core import Pdp

LEARNER = "human.idjag-learner"
MCP = "mcp.api-mcp"
AGENT = "ai.agent"


@dataclass
class PdpLab:
    settings: Settings
    http: httpx.Client
    idp_key: SigningKey
    keys: dict[str, SigningKey] = field(default_factory=dict)
    #: The PDP behind the sockets (its caches, for tests that bound them).
    pdp: Pdp | None = None

    @property
    def zms(self) -> str:
        return self.settings.endpoints.zms

    @property
    def zts(self) -> str:
        return self.settings.endpoints.zts

    @property
    def issuer_idp(self) -> str:
        return self.settings.endpoints.idp_issuer

    def key(self, principal: str) -> SigningKey:
        if principal not in self.keys:
            self.keys[principal] = SigningKey.load_or_create(self.settings.key_file(principal))
        return self.keys[principal]

    # ------------------------------------------------------------------ ZMS
    def zms_call(
        self, method: str, path: str, body: Any = None, principal: str = ADMIN_PRINCIPAL
    ) -> httpx.Response:
        headers = {
            "Authorization": "Bearer "
            + make_admin_assertion(principal, self.key(principal), self.zms)
        }
        if body is not None:
            return self.http.request(method, self.zms + path, json=body, headers=headers)
        return self.http.request(method, self.zms + path, headers=headers)

    def ok(
        self, method: str, path: str, body: Any = None, principal: str = ADMIN_PRINCIPAL
    ) -> httpx.Response:
        response = self.zms_call(method, path, body, principal)
        assert response.status_code in (200, 204), (
            method,
            path,
            response.status_code,
            response.text,
        )
        return response

    def create_domain(self, name: str) -> None:
        self.ok(
            "POST", "/domain", {"name": name, "description": name, "adminUsers": [ADMIN_PRINCIPAL]}
        )

    def register_service(self, principal: str, provider_endpoint: str | None = None) -> None:
        domain, _, service = principal.rpartition(".")
        key = self.key(principal)
        body: dict[str, Any] = {
            "name": principal,
            "publicKeys": [{"id": key.kid, "key": ybase64_encode(public_pem(key.key))}],
        }
        if provider_endpoint:
            body["providerEndpoint"] = provider_endpoint
        self.ok("PUT", f"/domain/{domain}/service/{service}", body)

    def role(self, domain: str, role: str, members: list[str]) -> None:
        self.ok(
            "PUT",
            f"/domain/{domain}/role/{role}",
            {"name": f"{domain}:role.{role}", "roleMembers": [{"memberName": m} for m in members]},
        )

    def allow(
        self, domain: str, policy: str, role: str, action: str, resource: str, effect: str = "ALLOW"
    ) -> None:
        self.ok(
            "PUT",
            f"/domain/{domain}/policy/{policy}",
            {
                "name": f"{domain}:policy.{policy}",
                "assertions": [
                    {
                        "role": f"{domain}:role.{role}",
                        "resource": resource,
                        "action": action,
                        "effect": effect,
                    }
                ],
            },
        )

    # ------------------------------------------------------------------ ZTS
    def client_assertion(self, principal: str, audience: str | None = None) -> dict[str, str]:
        return {
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(
                principal, self.key(principal), audience or self.zts
            ),
        }

    def token(
        self, form: dict[str, str], client: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        data = dict(form)
        if client is not None:
            data.update(self.client_assertion(client))
        return self.http.post(self.zts + "/oauth2/token", data=data, **kwargs)

    def client_credentials(self, principal: str, scope: str) -> httpx.Response:
        return self.token(
            {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": scope}, client=principal
        )

    def id_token(self, username: str = "idjag-learner", aud: str = AGENT, **overrides: Any) -> str:
        issued = now()
        claims = {
            "iss": self.issuer_idp,
            "sub": new_jti(),
            "aud": aud,
            "azp": aud,
            "typ": "ID",
            "preferred_username": username,
            "iat": issued,
            "exp": issued + 300,
            "auth_time": issued,
        }
        claims.update(overrides)
        return self.idp_key.sign(claims, typ="JWT")

    def request_id_jag(
        self,
        id_token: str,
        client: str = AGENT,
        scope: str = "api:role.docs-getter mcp:role.mcp-accessor",
        resource: str | None = None,
        **extra: str,
    ) -> httpx.Response:
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_ID_JAG,
            "subject_token": id_token,
            "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            "audience": self.zts,
            "scope": scope,
        }
        form["resource"] = resource if resource is not None else self.settings.endpoints.mcp
        form.update(extra)
        return self.token(form, client=client)

    def redeem(self, id_jag: str, client: str = AGENT, **extra: str) -> httpx.Response:
        return self.token(
            {"grant_type": GRANT_JWT_BEARER, "assertion": id_jag, **extra}, client=client
        )

    def exchange(
        self,
        subject_token: str,
        client: str = MCP,
        scope: str = "api:role.docs-getter",
        **extra: str,
    ) -> httpx.Response:
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "scope": scope,
            "audience": "api",
            **extra,
        }
        return self.token(form, client=client)

    def audit(self) -> list[dict[str, Any]]:
        return self.ok("GET", "/lab/audit").json()["records"]

    def write_providers(self, entries: list[dict[str, str]] | None = None) -> None:
        if entries is None:
            entries = [
                {
                    "issuerUri": self.issuer_idp,
                    "jwksUri": self.settings.endpoints.idp_jwks,
                    "principalTemplate": "human.{preferred_username}",
                }
            ]
        self.settings.providers_file.write_text(json.dumps(entries))

    def reload_providers(self) -> httpx.Response:
        headers = {
            "Authorization": "Bearer "
            + make_admin_assertion(ADMIN_PRINCIPAL, self.key(ADMIN_PRINCIPAL), self.zts)
        }
        return self.http.post(self.zts + "/lab/reload", headers=headers)


def idp_app(key: SigningKey) -> Starlette:
    async def certs(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [key.jwk()]})

    return Starlette(routes=[Route("/realms/idjag/protocol/openid-connect/certs", certs)])


#: Descriptors a test module may leave open (a kept HTTP connection, a worker's pipe); a store
#: left open costs 3 per thread that used it (database, WAL, shared memory).
FD_GROWTH_PER_MODULE = 24


def open_fds() -> int:
    gc.collect()  # what only the collector would close is not a leak
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True, scope="module")
def _no_descriptor_leak() -> Iterator[None]:
    """Fails a module that leaves SQLite connections (or anything else) open: a full run of
    tests/pdp used to keep ~1,000 descriptors, the stores of the PDPs its tests opened."""
    if not os.path.isdir("/proc/self/fd"):
        yield  # the count needs /proc (Linux); elsewhere the guard is off
        return
    before = open_fds()
    yield
    grown = open_fds() - before
    assert grown <= FD_GROWTH_PER_MODULE, f"this module left {grown} file descriptors open"


@pytest.fixture(autouse=True)
def _stores_closed() -> Iterator[None]:
    """Every PDP store a test opened (a PDP app, ``Pdp.open``, a bare ``Store``) is closed
    after it: its committer thread ends and each thread's connection closes."""
    before = {id(store) for store in pdp_store.open_stores()}
    yield
    for store in pdp_store.open_stores():
        if id(store) not in before:
            store.close()


@pytest.fixture
def pdp_lab(
    request: pytest.FixtureRequest,
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[PdpLab]:
    app = create_app(lab_settings)
    try:
        if request.config.getoption("--pdp-in-process"):
            yield from _in_process(app, lab_settings, monkeypatch)
            return
        serve(app, reserved_sockets["zts"])
        serve(app, reserved_sockets["zms"])
        idp_key = SigningKey.load_or_create(lab_settings.key_file("idp-signing"), "RS256")
        serve(idp_app(idp_key), reserved_sockets["idp"])
        with httpx.Client(timeout=10) as http:
            yield PdpLab(settings=lab_settings, http=http, idp_key=idp_key, pdp=app.state.pdp)
    finally:
        # Its SQLite connections (one per thread that used it) and its committer thread:
        # left open, a full run kept ~1,000 descriptors (tests/pdp/conftest.py's fd guard).
        app.state.pdp.close()


def _in_process(
    app: Starlette, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PdpLab]:
    """The same PdpLab with the PDP app called in-process (``--pdp-in-process``): the requests
    go through the whole ASGI app (host check, error handlers) but no socket or server thread,
    and the PDP fetches the stand-in IdP's JWKS from the IdP app in-process too."""
    from starlette.testclient import TestClient

    from lab.oauth import http as lab_http

    idp_key = SigningKey.load_or_create(settings.key_file("idp-signing"), "RS256")
    idp_origin = settings.endpoints.idp_base
    fetch = lab_http.get
    # As a real server would: an unexpected error is the app's 500, not an exception here.
    options: dict[str, Any] = {"raise_server_exceptions": False, "follow_redirects": False}
    with TestClient(idp_app(idp_key), **options) as idp:

        def get(url: str, **kwargs: Any) -> httpx.Response:
            if url.startswith(idp_origin):
                return idp.get(url)
            return fetch(url, **kwargs)

        monkeypatch.setattr(lab_http, "get", get)
        with TestClient(app, base_url=settings.endpoints.zts, **options) as http:
            yield PdpLab(settings=settings, http=http, idp_key=idp_key, pdp=app.state.pdp)


@pytest.fixture
def world(pdp_lab: PdpLab) -> PdpLab:
    """The state the steps build by the end of the tutorial (step 14), via ZMS over HTTP."""
    lab = pdp_lab
    for domain in ("api", "mcp", "human", "ai"):
        lab.create_domain(domain)
    lab.register_service(LEARNER)
    lab.register_service(MCP, provider_endpoint=lab.settings.endpoints.mcp)
    lab.register_service(AGENT)
    lab.role("api", "docs-getter", [LEARNER])
    lab.role("mcp", "mcp-accessor", [LEARNER])
    # The tutorial's names: the exchange crosses mcp -> api, each domain grants its half.
    lab.role("mcp", "to-api-exchanger", [MCP])
    lab.role("api", "docs-getter-exchanger", [MCP])
    lab.role("api", "docs-getter-jag-exchanger", [AGENT])
    lab.role("mcp", "mcp-accessor-jag-exchanger", [AGENT])
    lab.allow("api", "docs-getter", "docs-getter", "get", "api:docs")
    lab.allow("mcp", "mcp-accessor", "mcp-accessor", "access", "mcp:mcp")
    lab.allow("mcp", "source-exchange", "to-api-exchanger", "zts.token_source_exchange", "mcp:api")
    lab.allow(
        "api",
        "target-exchange",
        "docs-getter-exchanger",
        "zts.token_target_exchange",
        "api:mcp:role.docs-getter",
    )
    lab.allow("api", "jag", "docs-getter-jag-exchanger", "zts.jag_exchange", "api:role.docs-getter")
    lab.allow(
        "mcp", "jag", "mcp-accessor-jag-exchanger", "zts.jag_exchange", "mcp:role.mcp-accessor"
    )
    lab.write_providers()
    assert lab.reload_providers().status_code == 200
    return lab
