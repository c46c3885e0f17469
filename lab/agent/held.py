"""The agent's key and its IdP registration, read once per version of their files.

Every ``Agent`` read and parsed both (the step engine and ``lab agent`` build one per action
or chain): the PEM key loaded and its RFC 7638 thumbprint computed, the realm file parsed as
JSON. A process now keeps what it read and reads again when the file changes (another inode,
size or modification time: ``lab reset`` writes keys anew, a learner edits the realm file).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lab.config import AGENT_PRINCIPAL
from lab.homefiles import FileStamp, file_stamp
from lab.oauth.jose import SigningKey

if TYPE_CHECKING:
    from lab.agent.signin import IdpClient

K = TypeVar("K")
V = TypeVar("V")

_lock = threading.Lock()
_keys: dict[Path, tuple[FileStamp, SigningKey]] = {}
_clients: dict[tuple[Path, str], tuple[FileStamp, IdpClient]] = {}


def _reloaded(table: dict[K, tuple[FileStamp, V]], key: K, path: Path, load: Callable[[], V]) -> V:
    """``load()``'s result for ``path``, kept in ``table`` under ``key`` and loaded again only
    when the file changed. Stamped before reading: a change after it is seen by the next call;
    a file that is missing (``load`` may create it) is read back, and kept, by the next call."""
    stamp = file_stamp(path)
    with _lock:
        held = table.get(key)
    if stamp is not None and held is not None and held[0] == stamp:
        return held[1]
    value = load()
    if stamp is not None:
        with _lock:
            table[key] = (stamp, value)
    return value


def signing_key(path: Path) -> SigningKey:
    """``SigningKey.load_or_create(path)``, loaded again only when the file changed."""
    return _reloaded(_keys, path, path, lambda: SigningKey.load_or_create(path))


def idp_client(path: Path, client_id: str = AGENT_PRINCIPAL) -> IdpClient:
    """``IdpClient.from_realm_file(path, client_id)``, parsed again only when the file changed."""
    from lab.agent.signin import IdpClient

    return _reloaded(
        _clients, (path, client_id), path, lambda: IdpClient.from_realm_file(path, client_id)
    )
