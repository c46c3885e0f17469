"""Debian's chromium for the tests that look at pages in a real browser (docs site, ``lab ui``).

One place finds it (skip with the reason here, fail on CI where .ci/run installs it) and holds
the flags every headless run needs; each test adds its own network rule.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: Headless, no sandbox (CI runs as root), and none of Chromium's own background traffic: on a
#: closed network it would try, and be refused, many times at every start.
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    return found
