"""Plain text, code and Markdown."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.loaders.base import LoadedDocument, Section, decode_text


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
