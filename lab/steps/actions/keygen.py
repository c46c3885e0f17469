"""``keygen``: create (or reuse) a lab principal's key pair under ``$LAB_HOME/keys`` (0600)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.oauth.jose import ensure_private_key, key_id, load_private_key, public_pem, ybase64_encode
from lab.steps import shell
from lab.steps.actions.base import Produced
from lab.steps.queries import Outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext


def key_facts(path: Path) -> dict[str, str]:
    """What a step needs to register the key: its id and Athenz-encoded public PEM."""
    key = load_private_key(path)
    return {
        "kid": key_id(key),
        "public_ybase64": ybase64_encode(public_pem(key)),
        "path": str(path),
    }


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    principal = str(spec["principal"])
    path = ctx.settings.key_file(principal)
    # Reusing an existing key keeps a re-run consistent with the public key already registered.
    ensure_private_key(path)
    result = key_facts(path)
    return Produced(outcome=Outcome(result=result), command=" ".join(command(spec, ctx)))


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    return ["lab", "keygen", shell.quote(str(spec["principal"]))]
