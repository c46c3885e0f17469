"""``requires:`` in a step's front matter: asked of the running IdP, skip only for a missing
feature, and an unknown requirement is a step-file error."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.config import Endpoints, Settings
from lab.steps import StepFileError, load_step
from lab.steps.engine import RunContext, run_step
from lab.steps.requirements import ID_JAG_TOKEN_TYPE, unmet

STEP = """---
step: 1
slug: t
title: T
requires: [idp-issues-id-jag]
actions:
  - id: a
    request: {method: GET, url: "${endpoints.idp_issuer}/nothing"}
    expect:
      - status: 200
---
Body
"""


def idp_with_metadata(types: list[str]) -> Starlette:
    async def discovery(request: Request) -> JSONResponse:
        body: dict[str, object] = {"issuer": "x"}
        if types:
            body["identity_chaining_requested_token_types_supported"] = types
        return JSONResponse(body)

    path = "/realms/idjag/.well-known/openid-configuration"
    return Starlette(routes=[Route(path, discovery)])


def endpoints_for(url: str) -> Endpoints:
    return Endpoints(f"{url}/realms/idjag", "z", "z", "d", "d", "m")


def test_an_idp_listing_the_id_jag_token_type_meets_the_requirement(
    reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    url = serve(idp_with_metadata([ID_JAG_TOKEN_TYPE]), reserved_sockets["idp"])
    assert unmet(("idp-issues-id-jag",), endpoints_for(url)) is None


def test_a_step_needing_id_jag_issuance_is_skipped_saying_why(
    tmp_path: Path, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    url = serve(idp_with_metadata([]), reserved_sockets["idp"])
    path = tmp_path / "01-t.md"
    path.write_text(STEP)
    ctx = RunContext(Settings(home=tmp_path), endpoints_for(url), persist=False)
    result = run_step(load_step(path), ctx)
    assert result.status == "skipped"
    assert "does not issue ID-JAGs" in (result.message or "")
    assert ID_JAG_TOKEN_TYPE in (result.message or "")


def test_an_unreachable_idp_is_not_a_reason_to_skip() -> None:
    assert unmet(("idp-issues-id-jag",), endpoints_for("http://127.0.0.1:9")) is None


def test_an_unknown_requirement_is_a_step_file_error(tmp_path: Path) -> None:
    path = tmp_path / "01-t.md"
    path.write_text(STEP.replace("idp-issues-id-jag", "idp-reads-minds"))
    with pytest.raises(StepFileError, match="requires: unknown idp-reads-minds"):
        load_step(path)
