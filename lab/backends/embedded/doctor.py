"""``lab doctor`` for the embedded backend: Python, packages, LAB_HOME, ports, Java."""

from __future__ import annotations

import os
import sys

from lab.backends.base import BackendError, DoctorCheck
from lab.backends.embedded.ports import listen_socket
from lab.backends.embedded.process import process_alive
from lab.backends.embedded.runtime_file import read_runtime
from lab.config import PORTS, Settings


def embedded_doctor(settings: Settings) -> list[DoctorCheck]:
    """What the embedded backend needs: Python 3.11+, its packages, free ports, a writable home."""
    checks = [
        DoctorCheck(
            "python >= 3.11",
            sys.version_info >= (3, 11),
            sys.version.split()[0],
            "install Python 3.11 or newer and run `make setup`",
        )
    ]
    for module in ("uvicorn", "starlette", "httpx", "jwt", "mcp", "yaml"):
        checks.append(_module_check(module))
    checks.append(_home_check(settings))
    checks.extend(_port_checks(settings))
    return checks


def keycloak_doctor(settings: Settings) -> list[DoctorCheck]:
    """Java and the cached distribution for ``--idp keycloak`` (required only when chosen)."""
    from lab.backends import keycloak_process as kc
    from lab.backends import versions

    required = settings.idp == "keycloak"
    ok, detail = kc.java_report()
    checks = [
        DoctorCheck(
            f"Java {versions.KEYCLOAK_MIN_JAVA}+ (real Keycloak, --idp keycloak)",
            ok,
            detail,
            None if ok else kc.java_install_hint(),
            required=required,
        )
    ]
    tarball = kc.tarball_path(settings.cache_dir)
    cached = tarball.exists()
    checks.append(
        DoctorCheck(
            f"Keycloak {versions.KEYCLOAK_VERSION} distribution cached",
            cached,
            str(tarball) if cached else f"not yet in {tarball.parent} (LAB_CACHE)",
            None if cached else "`lab up --idp keycloak` fetches it once (~170 MB)",
            required=False,
        )
    )
    return checks


def _module_check(module: str) -> DoctorCheck:
    import importlib.util

    found = importlib.util.find_spec(module) is not None
    return DoctorCheck(
        f"python package {module}", found, "installed" if found else "missing", "run `make setup`"
    )


def _home_check(settings: Settings) -> DoctorCheck:
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        writable = os.access(settings.home, os.W_OK)
    except OSError:
        writable = False
    return DoctorCheck(
        "LAB_HOME writable",
        writable,
        str(settings.home),
        "set LAB_HOME to a directory you can write",
    )


def _port_checks(settings: Settings) -> list[DoctorCheck]:
    running = read_runtime(settings)
    ours = (
        set(running["ports"].values()) if running and process_alive(running.get("pid")) else set()
    )
    checks = []
    for name, (variable, _default) in PORTS.items():
        port = settings.ports[name]
        if port in ours:
            checks.append(DoctorCheck(f"port {port} ({name})", True, "used by the running lab"))
            continue
        try:
            listen_socket(settings.host, port, variable).close()
            checks.append(DoctorCheck(f"port {port} ({name})", True, "free"))
        except BackendError:
            checks.append(
                DoctorCheck(
                    f"port {port} ({name})",
                    False,
                    "in use by another program",
                    f"set {variable} to a free port",
                )
            )
    return checks
