"""The agent's key and IdP registration are read once per version of their files: every Agent
of a process shares them until the file changes (a new key written by ``lab reset``, an edited
realm file), and then reads the new one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lab.agent import held
from lab.agent.signin import DEFAULT_REALM_FILE
from lab.oauth.jose import SigningKey, generate_private_key, write_private_key


def test_the_key_is_loaded_once_and_again_when_its_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "ai.agent.key.pem"
    created = held.signing_key(path)  # created on first use, as load_or_create does
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    first = held.signing_key(path)
    assert first.kid == created.kid
    assert held.signing_key(path) is first
    write_private_key(path, generate_private_key("ES256"))  # lab reset: a new key
    renewed = held.signing_key(path)
    assert renewed.kid != first.kid
    assert renewed.kid == SigningKey.load_or_create(path).kid


def test_the_realm_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "realm.json"
    realm = json.loads(DEFAULT_REALM_FILE.read_text())
    path.write_text(json.dumps(realm))
    first = held.idp_client(path)
    assert held.idp_client(path) is first
    for client in realm["clients"]:
        if client["clientId"] == first.client_id:
            client["secret"] = "a-new-secret-of-another-length"
    path.write_text(json.dumps(realm))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert held.idp_client(path).client_secret == "a-new-secret-of-another-length"
