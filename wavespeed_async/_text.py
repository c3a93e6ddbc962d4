"""Server-controlled text made safe to print, log or put in a file name."""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]


def printable(text: str, *, limit: int = 500) -> str:
    """``text`` without control, format or separator characters (a plain space is kept),
    cut to ``limit`` characters.

    For anything the server controls that is printed, logged or used in a file name: an
    ANSI escape, a NUL, a carriage return or a bidi override never reaches a terminal or a
    file system through it.
    """
    if text.isprintable() and len(text) <= limit:
        return text
    clean = "".join(
        ch for ch in text[: limit + 1] if ch == " " or unicodedata.category(ch)[0] not in "CZ"
    )
    return clean if len(clean) <= limit else clean[: limit - 1] + "\u2026"
