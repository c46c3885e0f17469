"""A small test-only ZTS stand-in: real keys, real signed tokens and signed policy data.

It serves only what a resource server needs from the PDP (JWKS, signed policy data with ETag,
and a token-exchange endpoint), with the policy set directly by the test. The end-to-end tests
use the real PDP (lab.pdp) instead; this keeps the resource servers' own checks testable alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lab.config import MCP_PRINCIPAL, Settings
from lab.oauth.errors import InvalidClient, InvalidGrant, UnauthorizedClient
from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    key_id,
    load_public_key,
    new_jti,
    now,
    static_key_resolver,
    verify_jwt,
)
from lab.oauth.starlette import exception_handlers, read_form
from lab.oauth.tokens import TYP_ACCESS_TOKEN

IMPERSONATION_REFUSED = "Principal not authorized for token impersonation from source domain"


class ZtsStandIn:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuer = settings.endpoints.zts
        self.key = SigningKey.load_or_create(settings.key_file("pdp-signing"))
        #: Policy assertions as contracts §4 dicts: role, resource, action, effect.
        self.assertions: list[dict[str, str]] = []
        self.roles: dict[str, list[str]] = {}
        self.exchange_allowed = True
        self.exchange_forms: list[dict[str, str]] = []
        self.policy_fetches = 0

    # ----------------------------------------------------------------------------------- tokens
    def token(
        self,
        sub: str,
        scopes: list[str],
        *,
        aud: str = "api",
        client_id: str | None = None,
        act: dict[str, Any] | None = None,
        typ: str = TYP_ACCESS_TOKEN,
        lifetime_s: int = 300,
        key: SigningKey | None = None,
        issuer: str | None = None,
    ) -> str:
        issued = now()
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "sub": sub,
            "aud": aud,
            "client_id": client_id or sub,
            "scope": " ".join(scopes),
            "scp": scopes,
            "jti": new_jti(),
            "iat": issued - 5,
            "exp": issued + lifetime_s,
            "uid": sub,
        }
        if act is not None:
            claims["act"] = act
        return (key or self.key).sign(claims, typ=typ)

    def allow(
        self, role: str, action: str, resource: str = "api:docs", effect: str = "ALLOW"
    ) -> None:
        self.assertions.append(
            {"role": role, "resource": resource, "action": action, "effect": effect}
        )

    def revoke_all(self) -> None:
        self.assertions.clear()

    # ------------------------------------------------------------------------------------- app
    def app(self) -> Starlette:
        async def keys(request: Request) -> Response:
            return JSONResponse({"keys": [self.key.jwk()]})

        async def signed_policy_data(request: Request) -> Response:
            from lab.policy.signed import sign_policy_data

            self.policy_fetches += 1
            domain = request.path_params["domain"]
            if domain not in ("api", "mcp"):
                return JSONResponse({"code": 404, "message": "No such domain"}, status_code=404)
            # Athenz: a policy belongs to the domain its resource names (api:docs, mcp:mcp).
            mine = [a for a in self.assertions if a["resource"].startswith(f"{domain}:")]
            policy_data = {
                "domain": domain,
                "policies": [
                    {
                        "name": f"{domain}:policy.test",
                        "modified": "2026-01-01T00:00:00.000Z",
                        "assertions": [dict(a, id=i) for i, a in enumerate(mine, 1)],
                    }
                ],
                "roles": [
                    {"name": r, "members": m}
                    for r, m in sorted(self.roles.items())
                    if r.startswith(f"{domain}:")
                ],
            }
            etag = (
                '"'
                + hashlib.sha256(json.dumps(policy_data, sort_keys=True).encode()).hexdigest()[:16]
                + '"'
            )
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
            signed = {
                "policyData": policy_data,
                "zmsSignature": "",
                "zmsKeyId": "",
                "modified": stamp,
                "expires": expires,
            }
            return JSONResponse(sign_policy_data(signed, self.key), headers={"ETag": etag})

        async def token(request: Request) -> Response:
            form = await read_form(request)
            self.exchange_forms.append(form)
            self._authenticate_mcp(form.get("client_assertion", ""))
            try:
                subject = verify_jwt(
                    form.get("subject_token", ""),
                    static_key_resolver({self.key.kid: self.key.key.public_key()}),
                    typ=TYP_ACCESS_TOKEN,
                    issuer=self.issuer,
                )
            except JwtValidationError as exc:
                raise InvalidGrant(f"Invalid subject token: {exc.reason}") from None
            if not self.exchange_allowed:
                raise UnauthorizedClient(
                    "client may not exchange tokens from domain api",
                    status=403,
                    athenz_message=IMPERSONATION_REFUSED,
                )
            role = form.get("scope", "").partition(":role.")[2]
            issued = self.token(
                subject["sub"], [role], client_id=MCP_PRINCIPAL, act={"sub": MCP_PRINCIPAL}
            )
            return JSONResponse(
                {
                    "access_token": issued,
                    "token_type": "Bearer",
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "expires_in": 300,
                    "scope": role,
                }
            )

        routes = [
            Route("/zts/v1/oauth2/keys", keys, methods=["GET"]),
            Route(
                "/zts/v1/domain/{domain}/signed_policy_data", signed_policy_data, methods=["GET"]
            ),
            Route("/zts/v1/oauth2/token", token, methods=["POST"]),
        ]
        return Starlette(routes=routes, exception_handlers=exception_handlers())

    def _authenticate_mcp(self, assertion: str) -> None:
        public = load_public_key(
            self.settings.key_file(MCP_PRINCIPAL).with_suffix(".pub.pem").read_bytes()
        )
        try:
            verify_jwt(
                assertion, static_key_resolver({key_id(public): public}), audience=self.issuer
            )
        except JwtValidationError as exc:
            raise InvalidClient(f"Invalid client assertion: {exc.reason}", status=401) from None
