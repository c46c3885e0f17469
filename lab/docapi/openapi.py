"""OpenAPI 3.1 document of the document API, precise enough for a schema fuzzer (schemathesis)."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_DOC = {
    "type": "object",
    "required": ["id", "name", "content"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "name": {"type": "string"},
        "content": {"type": "string"},
    },
}
_NEW_DOC = {
    "type": "object",
    "required": ["name", "content"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "content": {"type": "string", "maxLength": 10_000},
    },
}
_DOC_ID = {
    "name": "doc_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**53},
}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def docapi_openapi(base_url: str, protected: bool) -> dict[str, Any]:
    """The document for one instance; the protected one declares Bearer (RFC 6750) security."""
    errors = {str(code): _json("error", _ERROR) for code in (400, 401, 403, 404, 413, 415)}
    secured: dict[str, Any] = {"security": [{"bearer": []}]} if protected else {}
    admin: dict[str, Any] = {"security": [{"bearer": []}]}

    def op(summary: str, ok: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "responses": {**ok, **errors}, **extra}

    body = {"required": True, "content": {"application/json": {"schema": _NEW_DOC}}}
    state_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["docs"],
                    "properties": {"docs": {"type": "array", "items": _DOC}},
                }
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ID-JAG lab document API" + (" (protected)" if protected else ""),
            "version": "1",
        },
        "servers": [{"url": base_url}],
        "paths": {
            "/healthz": {"get": op("liveness", {"200": _json("ok")})},
            "/api/docs": {
                "get": op("list documents", {"200": _json("the documents")}, **secured),
                "post": op(
                    "create a document", {"201": _json("created")}, requestBody=body, **secured
                ),
            },
            "/api/docs/{doc_id}": {
                "parameters": [_DOC_ID],
                "get": op("one document", {"200": _json("the document")}, **secured),
                "delete": op("delete a document", {"200": _json("deleted")}, **secured),
            },
            "/lab/reset": {
                "post": op("restore the default documents", {"200": _json("ok")}, **admin)
            },
            "/lab/state": {
                "get": op("all documents (admin)", {"200": _json("ok")}, **admin),
                "put": op(
                    "replace all documents (admin)",
                    {"200": _json("ok")},
                    requestBody=state_body,
                    **admin,
                ),
            },
        },
        "components": {
            "schemas": {"Error": _ERROR, "Doc": _DOC},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
