"""What the lab's own processes do first, before the libraries they use load.

Kept free of imports beyond the standard library: the ``lab`` command and the embedded runtime
call it before anything else (issue #21).
"""

from __future__ import annotations

import gc
import sys

#: Allocations between two young-generation collections in a ``lab`` command (CPython: 700).
COMMAND_GC_THRESHOLD = 50_000


def skip_httpx_cli() -> None:
    """Leave out httpx's command-line tool, which its package init imports.

    ``import httpx`` loads ``httpx._main`` (click, rich, pygments): about 60 ms of CPU in every
    process, twice that on a busy machine. httpx falls back to a stub ``main`` when that import
    fails, and no lab process runs httpx's CLI, so the module is marked absent (``None`` in
    ``sys.modules`` makes the import fail) unless something already loaded it.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def fewer_gc_passes() -> None:
    """Run the cyclic garbage collector less often in a ``lab`` command.

    With CPython's default (a young-generation pass every 700 allocations) the collector runs
    hundreds of times while the MCP SDK builds its pydantic models and finds almost nothing to
    free: 50–70 ms of the 0.45–0.5 s its import costs, ~0.1 s of `lab verify`'s 1.6 s of CPU
    (issue #21). Every pass still happens, 70× less often: the garbage a pass would have freed
    waits longer (a bounded amount), nothing is kept for good. Only the command's process; the
    runtime, a long-lived server, keeps the default (its start-up gained nothing measurable).
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(COMMAND_GC_THRESHOLD, middle, oldest)
