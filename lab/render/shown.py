"""Text that came from outside the lab's own code, made safe to show in a terminal.

A terminal obeys some characters instead of showing them: ESC starts a sequence that recolours,
moves the cursor or clears the screen (OSC 8 even makes a link, OSC 52 writes the clipboard), the
8-bit CSI U+009B does the same on some terminals, CR returns to the line's start so what follows
overwrites what came before, and the bidirectional overrides (U+202A-U+202E, U+2066-U+2069)
display text reversed. Rich prints all of them as they are. And a string printed as Rich markup
reads ``[bold red]`` or ``[link=…]`` as a style.

The lab shows what clients and servers sent: a refused scope quoted in an audit reason, a claim of
a token a learner pastes, a response body, a header, a username in a log line. Every such value
goes through :func:`shown` (one line), :func:`shown_lines` (several lines: newlines and tabs
kept) or :func:`shown_markup` (inside a markup string) on its way to the screen. A character is
shown as its Python escape (``\\x1b``, ``\\u202e``), so the learner sees that it was there.
``--json`` output and stored records keep the value as sent.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: C0 and C1 controls, DEL, the bidi embeddings, overrides and isolates, and lone UTF-16
#: surrogates (a JSON string may carry one; writing it to a UTF-8 terminal raises).
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: The same, less the newline and the tab, for text shown as several lines.
_UNSHOWABLE_IN_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown(value: object) -> str:
    """``value`` as one line a terminal shows and never obeys (a newline is ``\\x0a``)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSHOWABLE.sub(_escaped, text)


def shown_lines(value: object) -> str:
    """``value`` as text of several lines: newlines and tabs kept, every other control escaped."""
    text = value if isinstance(value, str) else str(value)
    return _UNSHOWABLE_IN_LINES.sub(_escaped, text)


def shown_markup(value: object, *, lines: bool = False) -> str:
    """``value`` for a Rich markup string: controls escaped and ``[…]`` never read as a style
    (``lines``: newlines and tabs kept, as :func:`shown_lines`)."""
    from rich.markup import escape

    return escape(shown_lines(value) if lines else shown(value))


def shown_data(data: Any) -> Any:
    """A JSON-like structure (a run's model) with every string, keys too, passed through
    :func:`shown_lines`: what a terminal renderer draws from it cannot reach the terminal as a
    control sequence, whichever field a renderer prints."""
    if isinstance(data, str):
        return shown_lines(data)
    if isinstance(data, dict):
        return {shown_data(key): shown_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [shown_data(item) for item in data]
    return data


class ShownFormatter(logging.Formatter):
    """A log line's text with control characters as escapes: a logged value a client sent (a
    username, a client id, a path) can neither break its line in two, forging the next line,
    nor drive the terminal of whoever reads the log (`lab logs`, ``tail -f``). A traceback,
    which the formatter appends after this, keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return shown(super().formatMessage(record))
