"""One module per action kind; each has ``run(spec, ctx) -> Produced`` (spec already substituted)
and ``command(spec, ctx) -> list[str]`` (what ``--manual`` prints)."""

from __future__ import annotations

from types import ModuleType


def module_for(kind: str) -> ModuleType:
    from lab.steps.actions import (
        agent,
        audit,
        gateway,
        keygen,
        mcp,
        providers,
        request,
        setting,
        wait,
    )

    modules: dict[str, ModuleType] = {
        "request": request,
        "keygen": keygen,
        "agent": agent,
        "mcp": mcp,
        "gateway": gateway,
        "setting": setting,
        "providers": providers,
        "wait": wait,
        "audit": audit,
    }
    return modules[kind]
