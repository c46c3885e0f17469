"""Node tools the interop tests run, installed with npm into a cache outside the repository.

Pinned here, in one place: the official MCP conformance suite (its newest release and newest
pre-release), the TypeScript MCP client 2.x (``CrossAppAccessProvider``), the MCP Inspector,
axe-core (``lab ui``'s accessibility check) and Node 22 from npm's ``node`` package when the
machine's Node is older (the conformance suite and the Inspector need Node >= 22). Each package
gets its own prefix under
``~/.cache/idjag-lab/npm`` (``LAB_TOOLS_CACHE`` moves the root), installed once and reused.

``python -m tests.npmtools`` installs them all (``make interop-tools``); tests call
:func:`require`, which installs on first use, and skips when npm is missing, or fails when
``CI=true`` (a skip for something this machine can run is a failure there).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NODE_MAJOR = 22


@dataclass(frozen=True)
class NpmTool:
    key: str
    package: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def prefix(self) -> Path:
        return cache_root() / f"{self.key}-{self.version}"

    @property
    def package_dir(self) -> Path:
        return self.prefix / "node_modules" / self.package

    def bin(self, name: str) -> Path:
        return self.prefix / "node_modules" / ".bin" / name


#: The newest release and the newest pre-release of the conformance suite (npm dist-tags
#: ``latest`` and the 0.2.0 alphas), the TS client with CrossAppAccessProvider, the Inspector.
CONFORMANCE_RELEASE = NpmTool("conformance", "@modelcontextprotocol/conformance", "0.1.16")
CONFORMANCE_PRERELEASE = NpmTool(
    "conformance", "@modelcontextprotocol/conformance", "0.2.0-alpha.12"
)
TS_CLIENT = NpmTool("ts-client", "@modelcontextprotocol/client", "2.4.0")
INSPECTOR = NpmTool("inspector", "@modelcontextprotocol/inspector", "2.12.0")
NODE = NpmTool("node", "node", "22")
#: The accessibility rules `lab ui`'s browser test runs in the page (tests/ui).
AXE = NpmTool("axe", "axe-core", "4.14.1")
TOOLS = (NODE, CONFORMANCE_RELEASE, CONFORMANCE_PRERELEASE, TS_CLIENT, INSPECTOR, AXE)


class ToolUnavailable(RuntimeError):
    """npm is missing or an install failed; the message says which and how to fix it."""


def cache_root() -> Path:
    base = os.environ.get("LAB_TOOLS_CACHE") or "~/.cache/idjag-lab"
    return Path(base).expanduser() / "npm"


@contextlib.contextmanager
def _locked(prefix: Path) -> Iterator[None]:
    """One installer per prefix at a time (several test runs share the cache)."""
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _installed_version(tool: NpmTool) -> str | None:
    try:
        return str(json.loads((tool.package_dir / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _matches(tool: NpmTool, version: str | None) -> bool:
    if version is None:
        return False
    return version == tool.version or version.startswith(f"{tool.version}.")


def install(tool: NpmTool) -> Path:
    """The tool's prefix, installing it there first if needed."""
    if _matches(tool, _installed_version(tool)):
        return tool.prefix
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable(
            "npm is not installed (Debian: apt-get install nodejs npm); "
            f"it installs {tool.spec} into {cache_root()}"
        )
    with _locked(tool.prefix):
        if _matches(tool, _installed_version(tool)):
            return tool.prefix
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", tool.spec],
            cwd=tool.prefix,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not _matches(tool, _installed_version(tool)):
            raise ToolUnavailable(
                f"npm install {tool.spec} failed in {tool.prefix}: {done.stderr.strip()[-800:]}"
            )
    return tool.prefix


def _node_major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def node_bin_dir() -> Path:
    """A directory holding ``node`` >= 22 (the machine's, else npm's ``node@22``)."""
    system = shutil.which("node")
    if system is not None and _node_major(system) >= NODE_MAJOR:
        return Path(system).parent
    install(NODE)
    return NODE.prefix / "node_modules" / ".bin"


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a node tool: Node 22 first on PATH, no telemetry, no update checks."""
    env = dict(os.environ)
    env["PATH"] = f"{node_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("NO_UPDATE_NOTIFIER", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.update(extra or {})
    return env


def require(tool: NpmTool) -> Path:
    """For tests: install ``tool`` (and Node 22) or skip; with ``CI=true`` fail instead."""
    try:
        node_bin_dir()
        return install(tool)
    except (ToolUnavailable, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool.spec} is needed and could not be installed: {exc}")
        pytest.skip(f"{tool.spec} is not available: {exc}")


def main() -> int:
    for tool in TOOLS:
        if tool is NODE:
            print(f"node: {node_bin_dir()}")
            continue
        try:
            print(f"{tool.spec}: {install(tool)}")
        except ToolUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
