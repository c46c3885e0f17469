"""The MCP Inspector CLI, installed with npm into a cache outside the repository.

``@modelcontextprotocol/inspector`` 2.x needs Node ≥ 22.19; when the machine's node is older, a
Node 22 from the npm registry's ``node`` package is installed beside it (reference
python-stack.md §2). Both live under ``~/.cache/idjag-lab/npm`` (``IDJAG_NPM_CACHE`` moves it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector@^2.12.0"
NODE_PACKAGE = "node@^22.19.0"
MIN_NODE = (22, 19)
INSTALL_TIMEOUT_S = 300


class ToolMissing(Exception):
    """npm or a package could not be installed; the message says what and why."""


@dataclass(frozen=True)
class Inspector:
    binary: Path
    path: str  # PATH with a new enough node first

    def command(self, *args: str) -> list[str]:
        return [str(self.binary), "--cli", *args]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PATH": self.path}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "idjag-lab" / "npm"
    return Path(os.environ.get("IDJAG_NPM_CACHE", default))


def ensure_inspector() -> Inspector:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissing("npm is not installed (apt-get install nodejs npm)")
    path = os.environ.get("PATH", "")
    if not _node_is_new_enough(shutil.which("node")):
        node_dir = _install(npm, "node22", NODE_PACKAGE, "node")
        path = f"{node_dir}{os.pathsep}{path}"
    bin_dir = _install(npm, "inspector", INSPECTOR_PACKAGE, "mcp-inspector")
    return Inspector(bin_dir / "mcp-inspector", path)


def _install(npm: str, folder: str, package: str, binary: str) -> Path:
    prefix = cache_dir() / folder
    bin_dir = prefix / "node_modules" / ".bin"
    if (bin_dir / binary).exists():
        return bin_dir
    prefix.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", package],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0 or not (bin_dir / binary).exists():
        raise ToolMissing(f"npm install {package} failed: {result.stderr[-800:]}")
    return bin_dir


def _node_is_new_enough(node: str | None) -> bool:
    if node is None:
        return False
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        major, minor = (int(part) for part in out.stdout.strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.SubprocessError):
        return False
    return (major, minor) >= MIN_NODE
