"""What the CLI prints of names and text it did not write (file names, sources, sheet
names, answers): shown, never obeyed by the terminal."""

from __future__ import annotations

import os

# C0 controls (ESC starts a terminal escape sequence), DEL, C1 controls (0x9b is a one-byte
# CSI) and the bidirectional overrides and isolates that reorder what a line shows.
_UNPRINTABLE = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F,
                *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNPRINTABLE}

_TEXT_ESCAPES = {c: e for c, e in _ESCAPES.items() if chr(c) not in "\n\t"}


def printable(text: object) -> str:
    """`text` with terminal control characters shown as escapes (ESC as \\x1b): a file
    name cannot colour, move or rewrite the user's terminal."""
    return str(text).translate(_ESCAPES)


def printable_text(text: str) -> str:
    """`printable` for passages and answers: their line breaks and tabs are kept."""
    return text.translate(_TEXT_ESCAPES)


def middle_truncated(text: str, width: int) -> str:
    """`text` cut to `width` characters in the middle, with an ellipsis: a path keeps its
    start and, with twice the room, its end."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 3  # the end (the file name) is what tells names apart
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def shown_paths(paths: list[str], cwd: str) -> tuple[str, list[str]]:
    """(base, paths relative to base): the current directory when every path is under it,
    else the paths' common folder ("" when they share none but the root)."""
    absolute = [p for p in paths if p.startswith("/")]
    if not paths or len(absolute) < len(paths):
        return "", list(paths)
    cwd = cwd.rstrip("/") or "/"
    base = os.path.commonpath(paths)
    if cwd != "/" and (base == cwd or base.startswith(cwd + "/")):
        base = cwd
    elif base in paths:  # one document: its folder is the base
        base = os.path.dirname(base)
    if base == "/":
        return "", list(paths)
    return base, [p[len(base) + 1:] for p in paths]
