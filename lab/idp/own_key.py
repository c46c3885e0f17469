"""Loading the IdP's own RS256 key without re-validating it on every start (issue #21).

``load_pem_private_key`` checks an RSA private key's consistency (OpenSSL's ``RSA_check_key``:
``p·q = n``, the CRT values, …): 25–30 ms of CPU idle, ~90 ms on a busy machine, on the path of
every ``lab up``. That check protects against a *malformed* key from somewhere else — signing
with inconsistent CRT values can produce faulty signatures that reveal a factor of ``n``. The
key here is not from somewhere else: the lab generated it with ``cryptography`` and wrote it
itself (``write_private_key``: 0600, and its public half beside it in the same call). So the
check is skipped only when all of this holds, and the normal, validating load runs otherwise:

- the file is a regular file owned by this user with mode exactly 0600, as the lab writes it
  (nobody but its owner can have replaced it since);
- the public key written beside it (``.pub.pem``, same owner) is the public half of the key
  loaded, so the file is the key the lab wrote with it, not one swapped in alone;
- it is an RSA key (the IdP signs with RS256).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _written_by_us(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) == 0o600
    )


def load_own_rsa_key(path: Path) -> rsa.RSAPrivateKey | None:
    """The RSA key at ``path`` loaded without the consistency check, when the lab wrote it
    itself (see the module docstring); ``None`` means: load it the normal way."""
    public_path = path.with_suffix(".pub.pem")
    if not _written_by_us(path):
        return None
    try:
        public_info = public_path.lstat()
        if not stat.S_ISREG(public_info.st_mode) or public_info.st_uid != os.getuid():
            return None
        key = serialization.load_pem_private_key(
            path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
        public = serialization.load_pem_public_key(public_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
        return None
    if key.public_key().public_numbers() != public.public_numbers():
        return None
    return key
