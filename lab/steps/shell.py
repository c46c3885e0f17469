"""Shell words for curl and ``lab`` commands: literal text is quoted with :mod:`shlex`; parts
that the shell must expand (``$(lab sign-assertion ...)``, ``$access_token``) travel inside the
text as markers and come out inside double quotes.
"""

from __future__ import annotations

import re
import shlex

_MARK = re.compile("\x00(CMD|VAR):([^\x00]*)\x00")


def command_marker(command: str) -> str:
    """Text that becomes ``$(command)`` when quoted."""
    return f"\x00CMD:{command}\x00"


def variable_marker(name: str) -> str:
    """Text that becomes ``${name}`` (a shell variable) when quoted."""
    return f"\x00VAR:{shell_name(name)}\x00"


def shell_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def quote(text: str) -> str:
    if "\x00" not in text:
        return shlex.quote(text)
    out, last = ['"'], 0
    for match in _MARK.finditer(text):
        out.append(_double_quoted(text[last : match.start()]))
        kind, value = match.group(1), match.group(2)
        out.append(f"$({value})" if kind == "CMD" else f"${{{value}}}")
        last = match.end()
    out.append(_double_quoted(text[last:]))
    out.append('"')
    return "".join(out)


def _double_quoted(literal: str) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", literal)
