"""Server-controlled text made safe to print, log or put in a file name."""

from __future__ import annotations

import unicodedata

__all__ = ["json_printable", "printable"]


def printable(text: str, *, limit: int = 500) -> str:
    """``text`` without control, format or separator characters, cut to ``limit`` characters.

    A plain space is kept.

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


def json_printable(text: str) -> str:
    """JSON text with every non-printable character written as a ``\\uXXXX`` escape.

    Characters its strings already write as escapes stay as they are. The result is the
    same JSON value, and nothing in it (a bidi override, a line separator, DEL) acts on the
    terminal it is printed to.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in "\n " else "".join(f"\\u{unit:04x}" for unit in _utf16(ch))
        for ch in text
    )


def _utf16(ch: str) -> list[int]:
    """The UTF-16 code units of one character (a pair for one beyond the BMP)."""
    raw = ch.encode("utf-16-be")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
