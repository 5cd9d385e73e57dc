"""PDF text per page with PDFium."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section, short
from ingest.loaders.pdf_tables import page_text

_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document at a time per process
_PDFIUM_PASSWORD = 4  # FPDF_ERR_PASSWORD
# Control characters: glyphs of symbol fonts without a Unicode mapping (bullets, ticks).
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def load_pdf(path: Path, data: bytes, find_tables: bool = True) -> LoadedDocument:
    """Text per page with PDFium (pypdfium2, the Chromium PDF engine): about ten times
    faster than pure-Python parsers on the sample documents, and it releases the GIL while
    it works, so parsing runs beside the embedding model. `find_tables=False` keeps ruled
    tables as PDFium's loose text (bench/loaders.py compares the two)."""
    import pypdfium2 as pdfium

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError("corrupt PDF: no PDF header")
    with _PDFIUM:
        try:
            # An empty user password (owner-only encryption) opens without asking.
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD:
                raise LoadError("encrypted PDF: a password is needed to read it") from None
            raise LoadError(f"corrupt PDF: {short(exc)}") from None
        try:
            sections = []
            for number in range(1, len(document) + 1):
                page = document[number - 1]
                textpage = page.get_textpage()
                try:
                    # Ruled tables become pipe tables (ingest/loaders/pdf_tables.py).
                    text = page_text(page, textpage, find_tables)
                finally:
                    textpage.close()
                    page.close()
                text = _PDF_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
                # PDFium marks a hyphen it found at a line end with U+FFFE.
                text = text.replace("\ufffe", "-")
                sections.append(Section(text, number))
            title = str(document.get_metadata_dict().get("Title") or "")
        except pdfium.PdfiumError as exc:
            raise LoadError(f"corrupt PDF: {short(exc)}") from None
        finally:
            document.close()
    return LoadedDocument(title=title.strip(), type="pdf", sections=sections,
                          pages=len(sections))


