"""What every loader returns, and the small helpers they share."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import LoadError

if TYPE_CHECKING:
    from PIL.Image import Image

# (page number from 1, dpi) -> the page as an image, for OCR; dpi applies to formats without
# pixels of their own (PDF pages).
PageRenderer = Callable[[int, int], "Image"]


@dataclass(frozen=True)
class Section:
    """A run of text with its page (PDF page, PPTX slide) where the format has pages."""

    text: str
    page: int | None = None
    ocr: bool = False  # read by OCR from an image of the page


@dataclass
class LoadedDocument:
    title: str
    type: str
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None
    # Pages (from 1) that have no text layer, and how to draw any page: ingest/ocr.py reads
    # them and puts their text among `sections`.
    scans: list[int] = field(default_factory=list)
    render: PageRenderer | None = None
    notes: list[str] = field(default_factory=list)  # one line each, shown with the file's result


_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRAILING.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip()


def decode_text(data: bytes) -> str:
    """Bytes of a text file → str; refuses binary content whatever the extension says."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    head = data[:8192]
    if b"\x00" in head:
        raise LoadError("binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise LoadError("binary content in a text file (no text encoding fits)")
    text = str(best)
    controls = sum(1 for c in text[:8192] if ord(c) < 32 and c not in "\n\r\t\f")
    if controls > len(text[:8192]) * 0.05:
        raise LoadError("binary content in a text file")
    return text


def short(exc: BaseException) -> str:
    """An exception as a reason of at most 160 characters on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def table_text(rows: list[list[str]]) -> str:
    """Rows of cells as Markdown pipe rows, one line per row; empty rows are dropped."""
    lines = []
    for row in rows:
        cells = [" ".join(c.split()) for c in row]
        if any(cells):
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
