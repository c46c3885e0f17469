"""Schemathesis drives the document API's OpenAPI document against both live instances (the
protected one with a genuine docs-getter token, and one with an admin assertion for ``/lab/*``):
no generated request may cause a 5xx. (The PDP's two documents are fuzzed in tests/pdp.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, now
from lab.oauth.tokens import TYP_ACCESS_TOKEN
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = "25"


def run_schemathesis(
    url: str, token: str | None, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``workdir``: it keeps a ``.schemathesis`` cache in its working directory,
    which must not land in the checkout."""
    command = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        url,
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        "1",
        "--no-color",
    ]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=workdir
    )


def access_token(settings: Settings) -> str:
    """A PDP-signed docs-getter token for audience ``api`` (RFC 9068), as the PDP would mint."""
    key = SigningKey.load_or_create(settings.key_file("pdp-signing"))
    issued = now()
    claims = {
        "iss": settings.endpoints.zts,
        "aud": "api",
        "sub": "human.idjag-learner",
        "client_id": "human.idjag-learner",
        "scope": "docs-getter",
        "jti": "fuzz",
        "iat": issued,
        "exp": issued + 600,
    }
    return key.sign(claims, typ=TYP_ACCESS_TOKEN)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The whole provisioned lab, so the protected instance really serves its token holder."""
    with full_lab(tmp_path_factory.mktemp("docapi-fuzz") / "home") as lab:
        yield lab


@pytest.fixture(scope="module")
def docapi_urls(running: RunningLab) -> dict[str, str]:
    return {
        "protected": running.endpoints.docapi_protected,
        "unprotected": running.endpoints.docapi_unprotected,
    }


@pytest.fixture(scope="module")
def lab_settings(running: RunningLab) -> Settings:
    return running.settings


def test_openapi_document_describes_every_route(docapi_urls: dict[str, str]) -> None:
    document = httpx.get(f"{docapi_urls['protected']}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/healthz",
        "/api/docs",
        "/api/docs/{doc_id}",
        "/lab/reset",
        "/lab/state",
    }
    assert document["servers"] == [{"url": docapi_urls["protected"]}]


@pytest.mark.skipif(
    not SCHEMATHESIS.exists() and not shutil.which("schemathesis"),
    reason="schemathesis not installed",
)
@pytest.mark.parametrize("instance", ["protected", "unprotected", "admin"])
def test_no_server_error_for_generated_requests(
    docapi_urls: dict[str, str], lab_settings: Settings, instance: str, tmp_path: Path
) -> None:
    base = docapi_urls["protected" if instance != "unprotected" else "unprotected"]
    if instance == "protected":
        token: str | None = access_token(lab_settings)
    elif instance == "admin":
        key = SigningKey.load_or_create(lab_settings.key_file(ADMIN_PRINCIPAL))
        token = make_admin_assertion(ADMIN_PRINCIPAL, key, base)
    else:
        token = None

    result = run_schemathesis(f"{base}/openapi.json", token, tmp_path)

    assert result.returncode == 0, result.stdout[-4000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert generated is not None, result.stdout[-2000:]
    assert generated.group(1) == generated.group(2) and int(generated.group(1)) > 0
