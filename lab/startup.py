"""What the lab's own processes do first, before the libraries they use load (and what the
runtime does once its parts are built).

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
    runtime, a long-lived server, keeps the default threshold (its start-up gained nothing
    measurable) and freezes its start-up heap instead (:func:`freeze_start_up_heap`).
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(COMMAND_GC_THRESHOLD, middle, oldest)


def freeze_start_up_heap() -> int:
    """Collect the start-up's garbage, then leave every object still alive out of later passes.

    What the runtime builds before it serves (settings, the parts' apps and routes, the MCP
    SDK's pydantic models, keys: ~100k tracked objects) lives as long as the process. The
    collector's full passes walk all of it anyway: about 55 ms of CPU each, with the event loop
    stopped, every 150-200 chains, to free two or three objects. ``gc.freeze`` (the standard
    long-running-server setting, see its docs) moves them to a permanent generation that no pass
    walks; the young generations and the full passes go on for everything created afterwards, so
    a request's cyclic garbage is freed as before. The cost is bounded: an object frozen here that
    later becomes cyclic garbage is never freed, and only start-up's objects are ever frozen.
    Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
