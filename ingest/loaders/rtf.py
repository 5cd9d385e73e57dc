"""Rich Text Format with striprtf (BSD): the text, with the document's \\title as its title."""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section, short

_TITLE = re.compile(r"\{\\title\s+((?:[^{}\\]|\\.)*)\}")


def load_rtf(path: Path, data: bytes) -> LoadedDocument:
    from striprtf.striprtf import rtf_to_text

    # RTF is 7-bit: other characters are escapes (\'e9, \u233) that striprtf decodes with
    # the code page; latin-1 only carries raw 8-bit bytes through unchanged.
    text = data.decode("latin-1")
    if not text.lstrip().startswith("{\\rtf"):
        raise LoadError("corrupt RTF: no {\\rtf header")
    try:
        body = rtf_to_text(text, errors="replace")
        match = _TITLE.search(text)
        title = rtf_to_text("{\\rtf1 " + match.group(1) + "}", errors="replace") if match else ""
    except (ValueError, IndexError, LookupError) as exc:
        raise LoadError(f"corrupt RTF: {short(exc)}") from None
    return LoadedDocument(title=" ".join(title.split()), type="rtf", sections=[Section(body)])
