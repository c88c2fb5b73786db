"""JSON Lines as every reader can split them: one record a line, even for ``str.splitlines()``.

``json.dumps(..., ensure_ascii=False)`` keeps U+2028, U+2029, NEL and the other characters that
``splitlines`` treats as line ends raw inside strings; they are escaped here, all else stays readable.
Every journal is written through here, so every key this process knows is masked here (:mod:`dspex.scrub`),
whatever produced the text that held it (a metric's exception message, a program's output).
"""

from __future__ import annotations

import json
from typing import Any

from .scrub import scrub_text

_LINE_ENDS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085", "\x0b": "\\u000b", "\x0c": "\\u000c",
              "\x1c": "\\u001c", "\x1d": "\\u001d", "\x1e": "\\u001e"}
_TABLE = str.maketrans(_LINE_ENDS)


def dumps_line(record: Any) -> str:
    """One JSON Lines record, newline included (non-JSON values as their ``str``; known keys masked)."""
    return scrub_text(json.dumps(record, ensure_ascii=False, default=str).translate(_TABLE)) + "\n"


__all__ = ["dumps_line"]
