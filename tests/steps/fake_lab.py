"""A tiny stand-in for the lab's parts, enough to exercise every action kind and query.

Real HTTP on loopback, real keys and real signed JWTs; none of lab/pdp, lab/docapi or
lab/mcpserver is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.oauth.admin import bearer_token, verify_principal_assertion
from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    load_private_key,
    new_jti,
    now,
    static_key_resolver,
    verify_jwt,
)

DOCS = [{"id": 1, "name": "first default doc"}, {"id": 2, "name": "second default doc"}]
CLIENT_SECRET = "s3cret-shown-once"


@dataclass
class FakeLab:
    settings: Settings
    signing: SigningKey
    settings_seen: list[dict[str, Any]] = field(default_factory=list)
    reloads: int = 0
    audit: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings) -> FakeLab:
        SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
        return cls(settings, SigningKey.load_or_create(settings.keys_dir / "fake-pdp.pem"))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/docs", self.docs),
                Route("/zts/v1/oauth2/token", self.token, methods=["POST"]),
                Route("/zts/v1/lab/reload", self.reload, methods=["POST"]),
                Route("/zms/v1/lab/audit", self.audit_export),
                Route("/zms/v1/domain/{d}/service/{s}/secret", self.secret, methods=["POST"]),
                Route("/lab/settings", self.put_settings, methods=["PUT"]),
                Route("/echo", self.echo, methods=["GET", "POST", "PUT"]),
            ]
        )

    # -- resource server -------------------------------------------------------------------------

    async def docs(self, request: Request) -> JSONResponse:
        token = bearer_token(request.headers)
        if token is None:
            return JSONResponse(
                {"error": "invalid_token", "error_description": "no token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        try:
            claims = verify_jwt(
                token,
                static_key_resolver({self.signing.kid: self.signing.key.public_key()}),
                audience="api",
            )
        except JwtValidationError as exc:
            return JSONResponse(
                {"error": "invalid_token", "error_description": exc.reason},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return JSONResponse(
            {"docs": DOCS, "caller": {"sub": claims["sub"], "scope": claims.get("scope")}}
        )

    # -- token endpoint ----------------------------------------------------------------------------

    async def token(self, request: Request) -> JSONResponse:
        form = await request.form()
        principal = self._client(form.get("client_assertion"), request)
        if principal is None:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "bad client assertion"},
                status_code=401,
            )
        scope = str(form.get("scope", ""))
        if "forbidden" in scope:
            message = (
                f"principal {principal} is not included in the requested role(s) in domain api"
            )
            return JSONResponse(
                {"error": "invalid_scope", "code": 403, "message": message}, status_code=403
            )
        issued = now()
        claims = {
            "iss": self.zts_issuer,
            "sub": principal,
            "client_id": principal,
            "aud": "api",
            "scope": scope.split(":role.")[-1],
            "jti": new_jti(),
            "iat": issued,
            "exp": issued + 300,
        }
        token = self.signing.sign(claims, typ="at+jwt")
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": claims["scope"],
            }
        )

    @property
    def zts_issuer(self) -> str:
        return self.settings.endpoints.zts

    def _client(self, assertion: Any, request: Request) -> str | None:
        if not isinstance(assertion, str):
            return None
        from lab.oauth.jose import unverified_claims

        principal = str(unverified_claims(assertion).get("iss"))
        path = self.settings.key_file(principal)
        if not path.exists():
            return None
        key = load_private_key(path).public_key()
        try:
            verify_principal_assertion(assertion, lambda _kid: key, self.zts_issuer)
        except Exception:  # noqa: BLE001 - any failure is "not authenticated" here
            return None
        return principal

    # -- admin endpoints ---------------------------------------------------------------------------

    def _admin(self, request: Request, audience: str) -> bool:
        key = load_private_key(self.settings.key_file(ADMIN_PRINCIPAL)).public_key()
        try:
            verify_principal_assertion(
                bearer_token(request.headers),
                lambda _kid: key,
                audience,
                expected_principal=ADMIN_PRINCIPAL,
            )
        except Exception:  # noqa: BLE001
            return False
        return True

    async def reload(self, request: Request) -> JSONResponse:
        self.reloads += 1
        return JSONResponse({"reloaded": True})

    async def audit_export(self, request: Request) -> JSONResponse:
        if not self._admin(request, self.settings.endpoints.zms):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"records": self.audit})

    async def secret(self, request: Request) -> JSONResponse:
        if not self._admin(request, self.settings.endpoints.zms):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"clientId": "api.client", "clientSecret": CLIENT_SECRET})

    async def put_settings(self, request: Request) -> JSONResponse:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        if not self._admin(request, origin):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        body = await request.json()
        self.settings_seen.append(body)
        return JSONResponse(body)

    async def echo(self, request: Request) -> JSONResponse:
        raw = (await request.body()).decode()
        return JSONResponse(
            {
                "method": request.method,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": raw,
            },
            headers={"X-Echo": "yes"},
        )


class FakeBackend:
    """Implements the one Backend method the engine calls: write the providers file, reload."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def set_providers(self, providers: list[dict[str, Any]]) -> None:
        import httpx

        Path(self.settings.providers_file).write_text(json.dumps(providers), encoding="utf-8")
        httpx.post(f"{self.settings.endpoints.zts}/lab/reload").raise_for_status()
