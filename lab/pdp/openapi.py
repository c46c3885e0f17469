"""OpenAPI 3.1 documents for ZMS and ZTS, precise enough for a schema fuzzer (schemathesis)."""

from __future__ import annotations

from typing import Any

from lab.pdp.core import Pdp

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
        "code": {"type": "integer"},
        "message": {"type": "string"},
    },
}
_NAME = {"type": "string", "pattern": "^[a-z0-9_][a-z0-9_-]*$", "maxLength": 64}
_DOMAIN = {
    "type": "string",
    "pattern": "^[a-z0-9_][a-z0-9_-]*(\\.[a-z0-9_][a-z0-9_-]*)*$",
    "maxLength": 128,
}
_OBJ = {"type": "object", "additionalProperties": True}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def _json_ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or _OBJ}}}


def _param(name: str, schema: dict[str, Any], where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def zms_openapi(pdp: Pdp) -> dict[str, Any]:
    errors = _errors(400, 401, 403, 404, 409, 413, 415)
    role = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "roleMembers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["memberName"],
                    "properties": {
                        "memberName": {"type": "string"},
                        "expiration": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    }
    assertion = {
        "type": "object",
        "required": ["role", "resource", "action"],
        "properties": {
            "role": {"type": "string"},
            "resource": {"type": "string"},
            "action": {"type": "string"},
            "effect": {"type": "string", "enum": ["ALLOW", "DENY"]},
        },
    }
    policy = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "assertions": {"type": "array", "items": assertion},
        },
    }
    service = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "providerEndpoint": {"type": "string", "format": "uri"},
            "publicKeys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "key"],
                    "properties": {"id": {"type": "string"}, "key": {"type": "string"}},
                },
            },
        },
    }
    domain_body = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": _NAME,
            "description": {"type": "string"},
            "org": {"type": "string"},
            "enabled": {"type": "boolean"},
            "adminUsers": {"type": "array", "items": {"type": "string"}},
        },
    }
    d, r, p, s, m = (
        _param("domain", _DOMAIN),
        _param("role", _NAME),
        _param("policy", _NAME),
        _param("service", _NAME),
        _param("member", {"type": "string", "maxLength": 128}),
    )
    ok, no_content = _json_ok("ok"), {"204": {"description": "done"}}

    def op(
        summary: str,
        params: list[Any],
        responses: dict[str, Any],
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": params,
            "responses": {**responses, **errors},
            "security": [{"principalAssertion": []}],
        }
        if body is not None:
            operation["requestBody"] = _body(body)
        return operation

    paths: dict[str, Any] = {
        "/domain": {
            "post": op("create a top-level domain (system admin)", [], {"200": ok}, domain_body),
            "get": op("list domains", [], {"200": ok}),
        },
        "/subdomain/{parent}": {
            "post": op("create a subdomain", [_param("parent", _DOMAIN)], {"200": ok}, domain_body)
        },
        "/domain/{domain}": {
            "get": op("get a domain", [d], {"200": ok}),
            "delete": op("delete a domain", [d], no_content),
        },
        "/domain/{domain}/role": {"get": op("list roles", [d], {"200": ok})},
        "/domain/{domain}/role/{role}": {
            "put": op("create or replace a role", [d, r], {**no_content, "200": ok}, role),
            "get": op("get a role", [d, r], {"200": ok}),
            "delete": op("delete a role", [d, r], no_content),
        },
        "/domain/{domain}/role/{role}/member/{member}": {
            "put": op(
                "add a member",
                [d, r, m],
                {**no_content, "200": ok},
                {
                    "type": "object",
                    "properties": {
                        "memberName": {"type": "string"},
                        "roleName": {"type": "string"},
                        "expiration": {"type": "string"},
                    },
                },
            ),
            "delete": op("remove a member", [d, r, m], no_content),
        },
        "/domain/{domain}/policy": {"get": op("list policies", [d], {"200": ok})},
        "/domain/{domain}/policy/{policy}": {
            "put": op("create or replace a policy", [d, p], {**no_content, "200": ok}, policy),
            "get": op("get a policy", [d, p], {"200": ok}),
            "delete": op("delete a policy", [d, p], no_content),
        },
        "/domain/{domain}/policy/{policy}/assertion": {
            "put": op("add an assertion", [d, p], {"200": ok}, assertion)
        },
        "/domain/{domain}/service/{service}": {
            "put": op("register a service", [d, s], {**no_content, "200": ok}, service),
            "get": op("get a service", [d, s], {"200": ok}),
            "delete": op("delete a service", [d, s], no_content),
        },
        "/domain/{domain}/service/{service}/secret": {
            "post": op("mint a client secret (shown once)", [d, s], {"200": ok})
        },
        "/access/{action}/{resource}": {
            "get": op(
                "check access",
                [
                    _param("action", {"type": "string"}),
                    _param("resource", {"type": "string"}),
                    _param("principal", {"type": "string"}, "query"),
                ],
                {"200": ok},
            )
        },
        "/lab/state": {
            "get": op("export state", [], {"200": ok}),
            "put": op("replace state", [], {"200": ok}, _OBJ),
        },
        "/lab/audit": {
            "get": op(
                "audit records (all, or a page with limit, or the last N with last)",
                [
                    _param("since", {"type": "integer", "minimum": 0}, "query"),
                    _param("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "query"),
                    _param("last", {"type": "integer", "minimum": 1, "maximum": 10000}, "query"),
                ],
                {"200": ok},
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ID-JAG lab ZMS", "version": "1"},
        "servers": [{"url": pdp.settings.endpoints.zms}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "principalAssertion": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def zts_openapi(pdp: Pdp) -> dict[str, Any]:
    form_props = {
        name: {"type": "string"}
        for name in (
            "grant_type",
            "scope",
            "audience",
            "resource",
            "subject_token",
            "subject_token_type",
            "requested_token_type",
            "assertion",
            "client_id",
            "client_secret",
            "client_assertion",
            "client_assertion_type",
            "expires_in",
        )
    }
    token_form = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "required": ["grant_type"], "properties": form_props}
            }
        },
    }
    token_ok = {
        "type": "object",
        "required": ["access_token", "token_type"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string"},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
            "issued_token_type": {"type": "string"},
        },
    }
    paths: dict[str, Any] = {
        "/oauth2/token": {
            "post": {
                "summary": "token endpoint (all grants)",
                "requestBody": token_form,
                "responses": {
                    "200": _json_ok("token", token_ok),
                    **_errors(400, 401, 403, 404, 413, 415),
                },
            }
        },
        "/oauth2/introspect": {
            "post": {
                "summary": "RFC 7662 introspection",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["token"],
                                "properties": {"token": {"type": "string"}, **form_props},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json_ok(
                        "introspection",
                        {
                            "type": "object",
                            "required": ["active"],
                            "properties": {"active": {"type": "boolean"}},
                        },
                    ),
                    **_errors(400, 401, 413, 415),
                },
            }
        },
        "/oauth2/keys": {"get": {"summary": "JWKS", "responses": {"200": _json_ok("JWKS")}}},
        "/oauth2/authorize": {
            "get": {
                "summary": "no interactive login (explains itself)",
                "responses": {
                    "400": {
                        "description": "explanation",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/.well-known/oauth-authorization-server": {
            "get": {"summary": "RFC 8414 metadata", "responses": {"200": _json_ok("metadata")}}
        },
        "/domain/{domain}/signed_policy_data": {
            "get": {
                "summary": "signed policy data",
                "parameters": [
                    _param("domain", _DOMAIN),
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json_ok("signed policy data"),
                    "304": {"description": "not modified"},
                    **_errors(400, 404),
                },
            }
        },
        "/lab/reload": {
            "post": {
                "summary": "re-read the providers file (system admin)",
                "security": [{"principalAssertion": []}],
                "responses": {"200": _json_ok("providers"), **_errors(400, 401, 403)},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ID-JAG lab ZTS", "version": "1"},
        "servers": [{"url": pdp.issuer}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "principalAssertion": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
