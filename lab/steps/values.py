"""``${name}`` (and ``{{ name }}``) substitution in actions and in the Markdown body.

Names resolve, in order: ``endpoints.*`` (the running backend's URLs), ``realm.client_secret``,
``keys.<principal>.kid`` / ``keys.<principal>.public_ybase64``, then captures (a dotted tail
reads into a captured mapping: ``${signin.id_token}``). A string that is exactly one reference
keeps the value's type, so ``value: ${flag}`` stays a bool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import AGENT_PRINCIPAL, Endpoints, Settings, is_principal_name

REFERENCE = re.compile(r"\$\{\s*([A-Za-z0-9_.\-]+)\s*\}|\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
REALM_FILE = Path(__file__).resolve().parents[2] / "keycloak" / "realm-idjag.json"


class MissingValue(KeyError):
    """A ``${name}`` that nothing defines; names the step file, action and variable."""

    def __init__(self, name: str, where: str = "") -> None:
        self.name = name
        self.where = where
        super().__init__(name)

    def __str__(self) -> str:
        # The fix first: a learner who jumped ahead needs the command, not the internals.
        step = re.search(r"(?:^|/)(\d\d)-[\w-]+\.md", self.where)
        how = f" (`lab reset --to {int(step[1])}` does it for you)" if step else ""
        at = f" ({self.where})" if self.where else ""
        return (
            f"run the earlier steps first{how}: ${{{self.name}}} has no value yet - it is not "
            f"an endpoint, realm or key value, and no earlier action captured it{at}"
        )


@dataclass
class Scope:
    """Where names are looked up; ``secrets`` collects values that must never be printed."""

    endpoints: Endpoints
    settings: Settings
    captures: Mapping[str, Any]
    secrets: set[str]

    def lookup(self, name: str) -> Any:
        if name.startswith("endpoints."):
            return _endpoint(self.endpoints, name)
        if name == "realm.client_secret":
            secret = realm_client_secret()
            self.secrets.add(secret)
            return secret
        if name.startswith("keys."):
            return _key_value(self.settings, name)
        return _capture(self.captures, name)


def substitute(value: Any, scope: Scope, where: str = "") -> Any:
    """``value`` with every reference replaced; recurses into lists and mappings."""
    if isinstance(value, str):
        return substitute_text(value, scope, where)
    if isinstance(value, list):
        return [substitute(item, scope, where) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, scope, where) for key, item in value.items()}
    return value


def substitute_text(text: str, scope: Scope, where: str = "") -> Any:
    whole = REFERENCE.fullmatch(text.strip())
    if whole is not None:
        return _resolve(whole, scope, where)

    def replace(match: re.Match[str]) -> str:
        value = _resolve(match, scope, where)
        return value if isinstance(value, str) else json.dumps(value)

    return REFERENCE.sub(replace, text)


def fill_body(text: str, lookup: Callable[[str], Any]) -> str:
    """The narrative with known values filled in; unknown names stay as written."""

    def replace(match: re.Match[str]) -> str:
        try:
            value = lookup(match.group(1) or match.group(2))
        except (MissingValue, KeyError):
            return match.group(0)
        return value if isinstance(value, str) else json.dumps(value)

    return REFERENCE.sub(replace, text)


def references(value: Any) -> set[str]:
    """Every name referenced anywhere in ``value``."""
    if isinstance(value, str):
        return {m.group(1) or m.group(2) for m in REFERENCE.finditer(value)}
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values())) if value else set()
    return set()


def _resolve(match: re.Match[str], scope: Scope, where: str) -> Any:
    name = match.group(1) or match.group(2)
    try:
        return scope.lookup(name)
    except MissingValue as exc:
        raise MissingValue(exc.name, where) from None


def _endpoint(endpoints: Endpoints, name: str) -> str:
    values = endpoints.as_dict()
    key = name.split(".", 1)[1]
    if key not in values:
        raise MissingValue(name)
    return values[key]


def realm_client_secret(realm_file: Path = REALM_FILE) -> str:
    """``ai.agent``'s client secret, read from the realm file Keycloak imports."""
    try:
        realm = json.loads(realm_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise MissingValue("realm.client_secret") from None
    for client in realm.get("clients", []):
        if client.get("clientId") == AGENT_PRINCIPAL and client.get("secret"):
            return str(client["secret"])
    raise MissingValue("realm.client_secret")


def _key_value(settings: Settings, name: str) -> str:
    # Principals contain dots (keys.human.idjag-learner.kid): the field is the last segment.
    principal, _, field = name[len("keys.") :].rpartition(".")
    if field not in ("kid", "public_ybase64", "path") or not is_principal_name(principal):
        raise MissingValue(name)
    path = settings.key_file(principal)
    if not path.exists():
        raise MissingValue(name)
    from lab.steps.actions.keygen import key_facts

    return str(key_facts(path)[field])


def _capture(captures: Mapping[str, Any], name: str) -> Any:
    if name in captures:
        return captures[name]
    head, _, tail = name.partition(".")
    if tail and head in captures:
        from lab.steps.queries import dotted

        found, value = dotted(captures[head], tail)
        if found:
            return value
    raise MissingValue(name)
