"""PDF text per page with PDFium; pages without a text layer are marked for OCR and drawn
for it on demand."""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section, short
from ingest.loaders.pdf_tables import page_text

if TYPE_CHECKING:
    from PIL.Image import Image

PDFIUM_LOCK = threading.Lock()  # PDFium is not thread-safe: one document at a time per process
_PDFIUM_PASSWORD = 4  # FPDF_ERR_PASSWORD
# Control characters: glyphs of symbol fonts without a Unicode mapping (bullets, ticks).
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")
# A page with fewer visible characters than this over an image is a scan: a stamped page
# number or Bates label is all the text layer such a page has.
_FEW_CHARS = 32
# Most pixels of a page drawn for OCR: a poster-sized page is drawn at a lower resolution
# instead of taking gigabytes (A4 at 300 dpi is 8.7 million).
_MAX_PIXELS = 40_000_000


def load_pdf(path: Path, data: bytes, find_tables: bool = True) -> LoadedDocument:
    """Text per page with PDFium (pypdfium2, the Chromium PDF engine): about ten times
    faster than pure-Python parsers on the sample documents, and it releases the GIL while
    it works, so parsing runs beside the embedding model. `find_tables=False` keeps ruled
    tables as PDFium's loose text (bench/loaders.py compares the two)."""
    import pypdfium2 as pdfium

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError("corrupt PDF: no PDF header")
    with PDFIUM_LOCK:
        try:
            # An empty user password (owner-only encryption) opens without asking.
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD:
                raise LoadError("encrypted PDF: a password is needed to read it") from None
            raise LoadError(f"corrupt PDF: {short(exc)}") from None
        try:
            sections = []
            scans: list[int] = []
            for number in range(1, len(document) + 1):
                page = document[number - 1]
                textpage = page.get_textpage()
                try:
                    # Ruled tables become pipe tables (ingest/loaders/pdf_tables.py).
                    text = page_text(page, textpage, find_tables)
                    if _is_scan(page, text):
                        scans.append(number)
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
                          pages=len(sections), scans=scans, render=_PageRenderer(data))


# -- pages for OCR ----------------------------------------------------------------------------

def _is_scan(page: Any, text: str) -> bool:
    """Next to no text layer, and an image on the page to read it from."""
    import pypdfium2.raw as pdfium_c

    if len("".join(text.split())) >= _FEW_CHARS:
        return False
    images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])
    return next(iter(images), None) is not None


class _PageRenderer:
    """Draws one page in grey for OCR. The document is opened again for each page, so a long
    scan is never held in memory as images."""

    def __init__(self, data: bytes):
        self.data = data

    def __call__(self, number: int, dpi: int) -> Image:
        import pypdfium2 as pdfium

        with PDFIUM_LOCK:
            document = pdfium.PdfDocument(self.data)
            try:
                page = document[number - 1]
                try:
                    width, height = page.get_size()  # in points, 1/72 inch
                    scale = min(dpi / 72, math.sqrt(_MAX_PIXELS / max(width * height, 1.0)))
                    bitmap = page.render(scale=scale, grayscale=True)
                    # A copy: the bitmap's buffer goes with the document.
                    image = bitmap.to_pil().copy()
                    image.info["dpi"] = (72 * scale, 72 * scale)
                    return image
                finally:
                    page.close()
            finally:
                document.close()


