"""The lab ui's run view never serves a whole token: fingerprints, claims and verdicts only.

Found by the sweep: ``/api/runs/N`` served the run model as saved, with the raw ``tokens`` list,
the token endpoint's response bodies (``access_token``, ``id_token``, ``refresh_token``), the
Bearer headers and the commands of the step's actions — whole tokens to any script of the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from lab.config import Settings
from lab.oauth.jose import SigningKey, token_fingerprint
from lab.state import save_run_model
from lab.ui.app import create_app

JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def fake_runner(*args: str) -> tuple[int, str, str]:
    return 0, "{}", ""


def a_run(tokens: dict[str, str]) -> dict[str, Any]:
    access, id_token, refresh = tokens["access"], tokens["id"], tokens["refresh"]
    return {
        "number": 10,
        "slug": "sign-in",
        "status": "passed",
        "actions": [
            {
                "id": "a",
                "command": f"curl -H 'Authorization: Bearer {access}' http://127.0.0.1/x",
                "result": {"access_token": access, "id_token": id_token, "refresh_token": refresh},
                "calls": [
                    {
                        "request_headers": {"authorization": f"Bearer {access}"},
                        "request_body": f"grant_type=x&subject_token={id_token}",
                        "response_body": json.dumps({"access_token": access}),
                    }
                ],
                "tokens": [
                    {"label": name, "fingerprint": token_fingerprint(value), "claims": {"sub": "u"}}
                    for name, value in tokens.items()
                ],
            }
        ],
        "checks": [{"passed": False, "reproduce": f"curl -d assertion={id_token} http://x"}],
        "tokens": [{"action": "a", "label": n, "token": t} for n, t in tokens.items()],
    }


def test_the_run_view_serves_no_whole_token_yet_keeps_fingerprints_and_verdicts(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    key = SigningKey.load_or_create(tmp_path / "k.pem")
    tokens = {
        name: key.sign({"iss": "https://elsewhere.example", "sub": name, "exp": 1}, typ="JWT")
        for name in ("access", "id", "refresh")
    }
    save_run_model(settings, 10, a_run(tokens))
    app = create_app(settings, "t", fake_runner)
    response = TestClient(app, base_url="http://127.0.0.1").get("/api/runs/10")
    assert response.status_code == 200, response.text
    text = response.text
    for value in tokens.values():
        assert value not in text
        assert value.split(".")[2] not in text  # not even the signature
    assert not JWT_SHAPED.search(text), JWT_SHAPED.findall(text)
    served = response.json()
    assert "tokens" not in served  # the raw list stays on disk
    [action] = served["actions"]
    assert action["result"]["refresh_token"] == "***"
    assert action["calls"][0]["request_headers"]["authorization"] == "Bearer ***"
    # Each token is still named by fingerprint and carries the ui's signature verdict.
    assert [t["fingerprint"] for t in action["tokens"]] == [
        token_fingerprint(v) for v in tokens.values()
    ]
    assert all("signature" in t and t["signature"]["valid"] is False for t in action["tokens"])
