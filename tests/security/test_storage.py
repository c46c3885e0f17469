"""$LAB_HOME: damaged stores and broken files are clear errors; everything is owner-only.

Findings (issue #16): 4 KiB zeroed in the middle of ``pdp.sqlite3`` gave a healthy ``lab up``
and client secrets that silently read as empty; ``LAB_HOME``, ``keys/``, ``logs/`` and
``checkpoints/`` were 0755 and the stores, ``providers.json`` and logs 0644; a broken
``providers.json`` gave a healthy ``lab up`` and a ``JSONDecodeError`` traceback in
``lab providers show``.
"""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.docapi.store import DocStore
from lab.homefiles import HomeFileError, check_store, tighten
from lab.pdp.store import Store
from tests.cli.conftest import Lab
from tests.stack import free_ports, stack_env


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Lab]:
    from lab.cli import common

    lab = Lab(stack_env(tmp_path / "home", free_ports()))
    yield lab
    lab.invoke("down")
    common.STATE.backend = None


def damaged_database(path: Path) -> Path:
    """A real SQLite file of ~100 pages with one 4 KiB page in the middle zeroed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE secrets (principal TEXT PRIMARY KEY, hash TEXT NOT NULL)")
    connection.executemany(
        "INSERT INTO secrets VALUES (?, ?)", [(f"svc.p{i:05d}", "h" * 64) for i in range(4000)]
    )
    connection.commit()
    connection.close()
    size = path.stat().st_size
    offset = (size // 2) // 4096 * 4096
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\0" * 4096)
    return path


def test_damaged_store_is_refused_by_the_integrity_check(tmp_path: Path) -> None:
    path = damaged_database(tmp_path / "pdp.sqlite3")
    with pytest.raises(HomeFileError) as refused:
        check_store(path)
    assert str(path) in str(refused.value)
    assert "lab reset --hard" in refused.value.fix
    with pytest.raises(HomeFileError):
        Store(path)
    with pytest.raises(HomeFileError):
        DocStore(damaged_database(tmp_path / "docapi.sqlite3"))


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pdp.sqlite3"
    path.write_bytes(b"\x13" * 8192)
    with pytest.raises(HomeFileError):
        check_store(path)


def test_lab_up_on_a_damaged_store_exits_3_naming_the_file_and_the_fix(cli: Lab) -> None:
    damaged_database(cli.home / "pdp.sqlite3")
    result = cli.invoke("up")
    assert result.exit_code == 3, result.output
    assert "pdp.sqlite3" in result.output
    assert "lab reset --hard" in result.output
    assert "Traceback" not in result.output


def test_lab_reset_hard_removes_the_damaged_stores(cli: Lab) -> None:
    damaged_database(cli.home / "pdp.sqlite3")
    result = cli.invoke("reset", "--hard")
    assert result.exit_code == 0, result.output
    assert not (cli.home / "pdp.sqlite3").exists()


def test_broken_providers_file_stops_lab_up_and_providers_show(cli: Lab) -> None:
    cli.home.mkdir(parents=True, exist_ok=True)
    (cli.home / "providers.json").write_text('[{"issuerUri": ')
    up = cli.invoke("up")
    assert up.exit_code == 3, up.output
    assert "providers.json" in up.output and "not valid JSON" in up.output
    show = cli.invoke("providers", "show")
    assert show.exit_code == 3, show.output
    assert "providers.json" in show.output
    assert "JSONDecodeError" not in show.output and "Traceback" not in show.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tighten_makes_everything_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys").chmod(0o755)
    (home / "keys" / "a.pub.pem").write_text("x")
    (home / "keys" / "a.pub.pem").chmod(0o644)
    outside = tmp_path / "outside-target"
    outside.mkdir()
    outside.chmod(0o755)
    (home / "outside").symlink_to(outside)
    tighten(home)
    assert mode(home) == 0o700
    assert mode(home / "keys") == 0o700
    assert mode(home / "keys" / "a.pub.pem") == 0o600
    assert mode(outside) == 0o755  # a symlink out of $LAB_HOME is not followed


def test_tighten_keeps_programs_runnable_by_their_owner_only(tmp_path: Path) -> None:
    """Real Keycloak is unpacked under $LAB_HOME/keycloak: its kc.sh must stay executable."""
    script = tmp_path / "home" / "keycloak" / "keycloak-26.7.3" / "bin" / "kc.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    tighten(tmp_path / "home")
    assert mode(script) == 0o700


@pytest.mark.slow
def test_lab_up_leaves_home_directories_0700_and_files_0600(cli: Lab) -> None:
    home = cli.home
    (home / "checkpoints").mkdir(parents=True)
    (home / "checkpoints").chmod(0o755)
    (home / "providers.json").write_text("[]")
    (home / "providers.json").chmod(0o644)
    result = cli.invoke("up")
    assert result.exit_code == 0, result.output
    loose = [
        f"{path.relative_to(home)} {oct(mode(path))}"
        for path in [home, *home.rglob("*")]
        if not path.is_symlink() and mode(path) != (0o700 if path.is_dir() else 0o600)
    ]
    assert loose == []
    for name in ("pdp.sqlite3", "docapi.sqlite3", "keys", "logs"):
        assert (home / name).exists(), name
