"""Plain text, code and Markdown: from bytes in memory, or from a file read in pieces as it
is chunked (`stream_text`), so a 200 MB log never sits in memory whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section, decode_text, read_text


def load_text(path: Path, data: bytes, kind: str = "text") -> LoadedDocument:
    return LoadedDocument(title=path.stem, type=kind, sections=[Section(decode_text(data))])


def load_code(path: Path, data: bytes) -> LoadedDocument:
    return load_text(path, data, "code")


_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def load_markdown(path: Path, data: bytes) -> LoadedDocument:
    text = decode_text(data)
    match = _MD_TITLE.search(text)
    return LoadedDocument(title=match.group(1) if match else path.stem, type="markdown",
                          sections=[Section(text)])


def stream_text(path: Path, kind: str) -> LoadedDocument:
    """The file at `path` (of type text, code or markdown) with its text in `stream`, read,
    decoded and cleaned about a megabyte at a time as it is consumed; the encoding is told
    from the first megabyte, and so is a Markdown file's title (its first `#` heading)."""
    file = path.open("rb")
    try:
        pieces = read_text(file)
        first = next(pieces, "")
    except BaseException:
        file.close()
        raise
    title = path.stem
    if kind == "markdown" and (match := _MD_TITLE.search(first)):
        title = match.group(1)
    return LoadedDocument(title=title, type=kind, stream=_sections(file, first, pieces))


def _sections(file: BinaryIO, first: str, rest: Iterator[str]) -> Iterator[Section]:
    """The pieces as one section: each but the last marked `more`."""
    with file:
        if not first:
            raise LoadError("no text could be extracted")
        held = first
        for piece in rest:
            yield Section(held, more=True)
            held = piece
        yield Section(held)
