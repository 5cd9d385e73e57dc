"""What the CLI prints of names and text it did not write (file names, sources, sheet
names, answers): shown, never obeyed by the terminal."""

from __future__ import annotations

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
