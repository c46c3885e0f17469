"""What the lab's own processes do first, before the libraries they use load.

Kept free of imports beyond the standard library: the ``lab`` command and the embedded runtime
call it before anything else (issue #21).
"""

from __future__ import annotations

import sys


def skip_httpx_cli() -> None:
    """Leave out httpx's command-line tool, which its package init imports.

    ``import httpx`` loads ``httpx._main`` (click, rich, pygments): about 60 ms of CPU in every
    process, twice that on a busy machine. httpx falls back to a stub ``main`` when that import
    fails, and no lab process runs httpx's CLI, so the module is marked absent (``None`` in
    ``sys.modules`` makes the import fail) unless something already loaded it.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
