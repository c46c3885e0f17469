"""Real Keycloak, started by ``lab up --idp keycloak`` from the cached (or fetched) distribution.

One lab for the whole suite (the first start builds Keycloak: a minute or two). With
``CI=true`` every missing prerequisite is a failure; elsewhere the suite skips, naming what is
missing. The Keycloak copy lives in the cache (``LAB_KEYCLOAK_DIR``), so a second run reuses its
build; the lab's own state is a fresh temporary ``LAB_HOME``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.backends import keycloak_process as kc
from lab.config import Endpoints, Settings
from tests.stack import Stack, free_ports, lab, stack_env

ON_CI = os.environ.get("CI") == "true"
#: `lab up` may fetch (once) and build (first start) Keycloak.
UP_TIMEOUT_S = 900.0


def skip_or_fail(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"real Keycloak is required on CI: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class KeycloakLab:
    stack: Stack
    up_seconds: float

    @property
    def endpoints(self) -> Endpoints:
        return self.stack.endpoints


@pytest.fixture(scope="session")
def keycloak_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakLab]:
    try:
        kc.find_java()
    except kc.JavaNotFound as exc:
        skip_or_fail(f"{exc.message}; {exc.fix}")
    cache = Settings.from_env().cache_dir
    if kc.cached_distribution(cache) is None:
        try:
            kc.ensure_distribution(cache, lambda detail: None)
        except kc.BackendError as exc:
            skip_or_fail(f"the Keycloak distribution is not cached and {exc.message}")
    home = tmp_path_factory.mktemp("keycloak-lab")
    with keycloak_dir(cache, tmp_path_factory) as keycloak_home:
        yield from _run_lab(home, cache, keycloak_home)


@contextlib.contextmanager
def keycloak_dir(cache: Path, factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shared, already built Keycloak copy in the cache when no other test run holds it;
    else a private one (unpacked and built again: slower, but two runs never share a database)."""
    shared = cache / "keycloak" / "pytest"
    shared.parent.mkdir(parents=True, exist_ok=True)
    with (cache / "keycloak" / "pytest.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield factory.mktemp("keycloak-private")
            return
        try:
            yield shared
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_lab(home: Path, cache: Path, keycloak_home: Path) -> Iterator[KeycloakLab]:
    import time

    extra = {
        "LAB_IDP": "keycloak",
        "LAB_CACHE": str(cache),
        "LAB_KEYCLOAK_DIR": str(keycloak_home),
        "LAB_KEYCLOAK_TIMEOUT_S": str(UP_TIMEOUT_S),
    }
    env = stack_env(home, free_ports(), extra)
    started = time.monotonic()
    try:
        result = lab("up", "--json", env=env, timeout=UP_TIMEOUT_S)
        up_seconds = time.monotonic() - started
        if result.returncode != 0:
            log = home / "logs" / "keycloak.log"
            tail = "\n".join(log.read_text().splitlines()[-30:]) if log.exists() else ""
            pytest.fail(
                f"`lab up --idp keycloak` exited {result.returncode}: {result.stderr}\n{tail}"
            )
        endpoints = Endpoints.from_dict(json.loads(result.stdout)["endpoints"])
        yield KeycloakLab(Stack(endpoints, env, home), up_seconds)
    finally:
        lab("down", env=env, timeout=120)


def runtime_record(home: Path) -> dict:
    return json.loads((home / "runtime.json").read_text())
