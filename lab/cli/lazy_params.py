"""Typer builds a pydantic ``TypeAdapter`` for a parameter before coercing even a missing value.

Typer 0.29 coerces every non-flag parameter through pydantic, and builds that parameter's
adapter the first time the parameter is processed, even when its value is ``None`` (an option
not given), which coercion then returns untouched. Importing pydantic and building adapters was
about a third of the CPU of a short command such as ``lab reset`` (issue #21). Here each
parameter's coercion is deferred until a value needs it, and the two plain cases the lab's
commands use (a ``str``, a canonical decimal ``int`` within its bounds) are taken as they are;
anything else — a bad number, a choice, a path, a parser — goes to Typer's own adapter, so
values and error messages stay exactly Typer's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def defer_type_adapters(command: Any) -> None:
    """Defer each Typer parameter's adapter in ``command`` (and its built sub-commands)."""
    for param in getattr(command, "params", ()):
        defer_param(param)
    commands = getattr(command, "commands", None)
    if isinstance(commands, dict):
        for sub in commands.values():
            defer_type_adapters(sub)


def defer_param(param: Any) -> Any:
    """Defer one Typer parameter's adapter (a no-op on anything else); returns ``param``."""
    deferred = _deferred_class()
    if deferred is None:
        return param  # another Typer: nothing to defer, it coerces its own way
    if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
        descriptor = param.type_descriptor
        param._runtime_param = deferred(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
        )
    return param


_NOT_PLAIN = object()


def plain_value(value: Any, descriptor: Any) -> Any:
    """``value`` coerced without pydantic when it is a plain ``str`` or in-range ``int``."""
    info = descriptor.parameter_info
    if not isinstance(value, str) or info.parser is not None or descriptor.is_list:
        return _NOT_PLAIN
    if descriptor.is_tuple or descriptor.is_choice or descriptor.is_file or descriptor.is_path:
        return _NOT_PLAIN
    if descriptor.annotation is str:
        return value
    if descriptor.annotation is int and not info.clamp and _CANONICAL_INT.fullmatch(value):
        number = int(value)
        if (info.min is None or number >= info.min) and (info.max is None or number <= info.max):
            return number
    return _NOT_PLAIN


_DEFERRED: list[Any] = []


def _deferred_class() -> Any:
    if _DEFERRED:
        return _DEFERRED[0]
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:
        _DEFERRED.append(None)
        return None

    @dataclass(frozen=True)
    class DeferredRuntimeParam(RuntimeParam):
        """Typer's coercion, built only when a value arrives that is not plain."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            plain = plain_value(value, param.type_descriptor)
            if plain is not _NOT_PLAIN:
                return plain
            real = build_runtime_param(param.type_descriptor)
            param._runtime_param = real
            return real._coerce_value(value, param=param, ctx=ctx)

    _DEFERRED.append(DeferredRuntimeParam)
    return DeferredRuntimeParam
