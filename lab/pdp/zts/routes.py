"""ZTS HTTP routes under ``/zts/v1`` (contracts §3)."""

from __future__ import annotations

import hashlib
import time
from typing import Any, NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import bearer_token, verify_principal_assertion
from lab.oauth.errors import InvalidRequest, NotFound
from lab.oauth.jose import JwtValidationError, unverified_header, verify_jwt
from lab.oauth.starlette import NO_STORE, read_form
from lab.oauth.tokens import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_PROFILE_ID_JAG,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TYP_ACCESS_TOKEN,
    TYP_ID_JAG,
)
from lab.pdp.client_auth import AUTH_METHODS, authenticate_client
from lab.pdp.core import Pdp
from lab.pdp.names import domain_name
from lab.pdp.providers import ProvidersFileError
from lab.pdp.store import timestamp
from lab.pdp.zts.dispatcher import TokenEndpoint
from lab.pdp.zts.grants.resource_scope import all_roles
from lab.policy.signed import canonical_json, sign_policy_data

POLICY_VALIDITY_S = 24 * 3600


def metadata(pdp: Pdp) -> dict[str, Any]:
    """RFC 8414 §2 authorization server metadata."""
    issuer = pdp.issuer
    document: dict[str, Any] = {
        "issuer": issuer,
        # The PDP has no interactive login; the endpoint exists because the MCP SDK's metadata
        # model requires it, and answers with an explanation.
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/oauth2/keys",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "grant_types_supported": [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "response_types_supported": ["code"],
        # The roles this PDP can put in a token, by full name (Athenz scope grammar); a client
        # may also send no scope and get the roles its resource needs (resource_scope.py).
        "scopes_supported": all_roles(pdp),
        # ID-JAG draft -04 §7: a resource AS advertises that it accepts ID-JAGs, and (being the
        # tutorial's ID-JAG issuer too) that it issues them by token exchange.
        "authorization_grant_profiles_supported": [GRANT_PROFILE_ID_JAG],
        "identity_chaining_requested_token_types_supported": [TOKEN_TYPE_ID_JAG],
    }
    # RFC 8414 §2: a member with no values is omitted, never an empty array.
    return {name: value for name, value in document.items() if value != []}


class SignedPolicy(NamedTuple):
    """One domain's signed policy data as served, and when it must be rebuilt."""

    version: tuple[int, int]  # the store's domain version it was built from
    etag: str
    document: dict[str, Any]
    expires: float  # the signature's own expiry (epoch seconds)
    stale_at: float  # the first membership expiry after it was built: live members change
    body: bytes | None = None  # the document as JSON bytes, encoded on the first 200


def build_routes(pdp: Pdp) -> list[Route]:
    token_endpoint = TokenEndpoint(pdp)
    policy_cache: dict[str, SignedPolicy] = {}

    async def token(request: Request) -> Response:
        form = await read_form(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        result = await token_endpoint.handle_async(form, headers)
        return JSONResponse(result.body, headers={**NO_STORE, **result.headers})

    async def keys(request: Request) -> Response:
        return JSONResponse({"keys": [pdp.signing_key.jwk()]})

    async def well_known(request: Request) -> Response:
        return JSONResponse(metadata(pdp))

    async def authorize(request: Request) -> Response:
        body = (
            "<!doctype html><title>No interactive login</title><h1>No interactive login here</h1>"
            "<p>This ZTS issues tokens only at its token endpoint (client_credentials, RFC 8693 "
            "token exchange, RFC 7523 jwt-bearer with an ID-JAG). "
            "Sign in at the identity provider.</p>"
        )
        return HTMLResponse(body, status_code=400)

    def introspect_sync(form: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
        authenticate_client(pdp, form, headers)
        token_value = form.get("token")
        if not token_value:
            raise InvalidRequest("missing required parameter token")
        try:
            typ = unverified_header(token_value).get("typ")
            claims = verify_jwt(
                token_value,
                pdp.key_resolver_self(),
                typ=(TYP_ACCESS_TOKEN, TYP_ID_JAG),
                issuer=pdp.issuer,
                required=("exp", "iat", "sub"),
            )
        except JwtValidationError:
            return {"active": False}  # RFC 7662 §2.2: nothing else is said about a bad token
        answer: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer" if typ == TYP_ACCESS_TOKEN else "N_A",
        }
        answer.update(
            {
                k: v
                for k, v in claims.items()
                if k
                in (
                    "iss",
                    "sub",
                    "aud",
                    "client_id",
                    "scope",
                    "jti",
                    "iat",
                    "exp",
                    "act",
                    "resource",
                    "uid",
                )
            }
        )
        return answer

    async def introspect(request: Request) -> Response:
        form = await read_form(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        return JSONResponse(
            await run_in_threadpool(introspect_sync, form, headers), headers=NO_STORE
        )

    def signed_policy_sync(domain: str) -> tuple[str, dict[str, Any]]:
        """The domain's signed policy data and its ETag, built once per domain version.

        Resource servers poll this every half second, mostly to hear 304: the document and its
        ETag are cached until a write touches the domain, a membership in it expires (live
        members change then), or the signature nears its own expiry. A 304 costs a dict lookup.
        """
        version = pdp.store.domain_version(domain)
        now = time.time()
        cached = policy_cache.get(domain)
        if (
            cached is not None
            and cached.version == version
            and now < cached.stale_at
            and cached.expires > now + 3600
        ):
            return cached.etag, cached.document
        view = pdp.store.domain_view(domain)
        if view is None:
            policy_cache.pop(domain, None)
            raise NotFound(f"No such domain: {domain}", athenz_message=f"No such domain: {domain}")
        policy_data = {
            "domain": domain,
            "policies": [
                {
                    "name": p["name"],
                    "modified": p.get("modified", view.modified),
                    "assertions": [
                        {k: a[k] for k in ("role", "resource", "action", "effect", "id") if k in a}
                        for a in p.get("assertions") or []
                    ],
                }
                for p in view.policies
                if p.get("active") is not False
            ],
            "roles": [{"name": r, "members": m} for r, m in sorted(view.live_members(now).items())],
        }
        etag = '"' + hashlib.sha256(canonical_json(policy_data)).hexdigest()[:32] + '"'
        next_expiry = view.next_expiry(now)
        stale_at = next_expiry if next_expiry is not None else float("inf")
        if cached is not None and cached.etag == etag and cached.expires > now + 3600:
            policy_cache[domain] = cached._replace(version=version, stale_at=stale_at)
            return etag, cached.document
        signed = {
            "policyData": policy_data,
            "zmsSignature": "",
            "zmsKeyId": "",
            "modified": view.modified or timestamp(),
            "expires": timestamp(now + POLICY_VALIDITY_S),
        }
        document = sign_policy_data(signed, pdp.signing_key)
        policy_cache[domain] = SignedPolicy(
            version, etag, document, now + POLICY_VALIDITY_S, stale_at
        )
        return etag, document

    def signed_policy_body(domain: str, etag: str) -> bytes:
        cached = policy_cache.get(domain)
        if cached is None or cached.etag != etag:  # replaced meanwhile: encode what we answer
            return bytes(JSONResponse(signed_policy_sync(domain)[1]).body)
        if cached.body is None:
            encoded = bytes(JSONResponse(cached.document).body)
            policy_cache[domain] = cached = cached._replace(body=encoded)
        return cached.body or b""

    async def signed_policy_data(request: Request) -> Response:
        domain = domain_name(request.path_params["domain"])
        etag, _ = await run_in_threadpool(signed_policy_sync, domain)
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        # The body is encoded once per version too (40 MB at 100k assertions), not per 200.
        body = await run_in_threadpool(signed_policy_body, domain, etag)
        return Response(body, media_type="application/json", headers={"ETag": etag})

    async def reload(request: Request) -> Response:
        verify_principal_assertion(
            bearer_token(request.headers),
            pdp.key_resolver(ADMIN_PRINCIPAL),
            pdp.issuer,  # exactly ZTS: an assertion addressed to ZMS is not good here
            expected_principal=ADMIN_PRINCIPAL,
            single_use=pdp.store.use_jti,
        )
        try:
            entries = await run_in_threadpool(pdp.providers.reload)
        except ProvidersFileError as exc:
            raise InvalidRequest(str(exc)) from None
        return JSONResponse({"providers": entries})

    async def openapi(request: Request) -> Response:
        from lab.pdp.openapi import zts_openapi

        return JSONResponse(zts_openapi(pdp))

    return [
        Route("/zts/v1/oauth2/token", token, methods=["POST"]),
        Route("/zts/v1/oauth2/keys", keys, methods=["GET"]),
        Route("/zts/v1/oauth2/authorize", authorize, methods=["GET"]),
        Route("/zts/v1/oauth2/introspect", introspect, methods=["POST"]),
        Route("/zts/v1/.well-known/oauth-authorization-server", well_known, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server/zts/v1", well_known, methods=["GET"]),
        Route("/zts/v1/domain/{domain}/signed_policy_data", signed_policy_data, methods=["GET"]),
        Route("/zts/v1/lab/reload", reload, methods=["POST"]),
        Route("/zts/v1/openapi.json", openapi, methods=["GET"]),
    ]
