"""PDF text per page with PDFium; pages without a text layer are marked for OCR and drawn
for it on demand. A PDF on disk is read a page at a time as it is chunked (`stream_pdf`), so
a long one never sits in memory whole, nor its text."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section, clean, short
from ingest.loaders.pdf_tables import page_text

if TYPE_CHECKING:
    from PIL.Image import Image

# PDFium is not thread-safe: one call at a time per process. Re-entrant: a page stream left
# unfinished may be closed by the garbage collector while this thread is inside PDFium.
PDFIUM_LOCK = threading.RLock()
_PDFIUM_PASSWORD = 4  # FPDF_ERR_PASSWORD
# Control characters: glyphs of symbol fonts without a Unicode mapping (bullets, ticks).
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")
# A page with fewer visible characters than this over an image is a scan: a stamped page
# number or Bates label is all the text layer such a page has.
_FEW_CHARS = 32
# Most pixels of a page drawn for OCR: a poster-sized page is drawn at a lower resolution
# instead of taking gigabytes (A4 at 300 dpi is 8.7 million).
_MAX_PIXELS = 40_000_000
_REOPEN_PAGES = 32  # pages read before the document is opened again (see PdfPages)


def load_pdf(path: Path, data: bytes, find_tables: bool = True) -> LoadedDocument:
    """Text per page with PDFium (pypdfium2, the Chromium PDF engine): about ten times
    faster than pure-Python parsers on the sample documents, and it releases the GIL while
    it works, so parsing runs beside the embedding model. `find_tables=False` keeps ruled
    tables as PDFium's loose text (bench/loaders.py compares the two)."""
    pdf = PdfPages(data, find_tables)
    try:
        pages = list(pdf.sections())
    finally:
        pdf.close()
    return LoadedDocument(title=pdf.title, type="pdf",
                          sections=[Section(s.text, s.page) for s in pages],
                          pages=pdf.count, scans=[s.page for s in pages if s.scan and s.page],
                          render=_PageRenderer(data))


def stream_pdf(path: Path) -> LoadedDocument:
    """The PDF at `path` with its pages in `stream`, read from the file one at a time as
    they are consumed: one Section a page, cleaned, empty ones too, those without a text
    layer marked `scan` (ingest/ocr.py reads them and drops the empty ones). `render` draws
    a page of the open document; the document closes when the stream ends."""
    pdf = PdfPages(path, find_tables=True)
    return LoadedDocument(title=pdf.title, type="pdf", pages=pdf.count,
                          stream=_cleaned(pdf), render=pdf.render)


def _cleaned(pdf: PdfPages) -> Iterator[Section]:
    try:
        for section in pdf.sections():
            yield Section(clean(section.text), section.page, scan=section.scan)
    finally:
        pdf.close()


class PdfPages:
    """An open PDF (bytes, or a file PDFium reads as it needs), read a page at a time. Each
    call into PDFium holds PDFIUM_LOCK, so other documents are read between two pages."""

    def __init__(self, source: bytes | Path, find_tables: bool):
        if isinstance(source, Path):
            with source.open("rb") as file:
                head = file.read(1024)
        else:
            head = source
        if not head.lstrip()[:5].startswith(b"%PDF"):
            raise LoadError("corrupt PDF: no PDF header")
        self._source = source
        self._find_tables = find_tables
        self._parsed = 0  # pages parsed since the document was opened
        import pypdfium2 as pdfium

        with PDFIUM_LOCK:
            self._document = _open(source)
            try:
                self.count = len(self._document)
                self.title = str(self._document.get_metadata_dict().get("Title") or "").strip()
            except pdfium.PdfiumError as exc:
                self._document.close()
                raise LoadError(f"corrupt PDF: {short(exc)}") from None
        self._closed = False

    def sections(self) -> Iterator[Section]:
        """One Section a page, in order, with its text as PDFium gives it (line ends and
        control characters tidied) and `scan` set on a page without a text layer."""
        for number in range(1, self.count + 1):
            text, scan = self._page(number)
            yield Section(text, number, scan=scan)

    def _page(self, number: int) -> tuple[str, bool]:
        import pypdfium2 as pdfium

        with PDFIUM_LOCK:
            self._reopen_now_and_then()
            try:
                page = self._document[number - 1]
                textpage = page.get_textpage()
                try:
                    # Ruled tables become pipe tables (ingest/loaders/pdf_tables.py).
                    text = page_text(page, textpage, self._find_tables)
                    scan = _is_scan(page, text)
                finally:
                    textpage.close()
                    page.close()
            except pdfium.PdfiumError as exc:
                raise LoadError(f"corrupt PDF: {short(exc)}") from None
        text = _PDF_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        # PDFium marks a hyphen it found at a line end with U+FFFE.
        return text.replace("\ufffe", "-"), scan

    def _reopen_now_and_then(self) -> None:
        """PDFium keeps every object it parsed (a page's images, fonts) until the document
        closes: 0.33 MB a page on a text page with a 300x300 photo, 100 MB over 300 such
        pages. Opened again every _REOPEN_PAGES pages, it holds only theirs."""
        self._parsed += 1
        if self._parsed > _REOPEN_PAGES:
            self._document.close()
            self._document = _open(self._source)
            self._parsed = 1

    def render(self, number: int, dpi: int) -> Image:
        with PDFIUM_LOCK:
            return _draw(self._document, number, dpi)

    def close(self) -> None:
        with PDFIUM_LOCK:
            if not self._closed:
                self._closed = True
                self._document.close()


def _open(source: bytes | Path) -> Any:
    """The PDFium document of `source` (PDFIUM_LOCK held); a LoadError when it cannot be
    opened."""
    import pypdfium2 as pdfium

    try:
        # An empty user password (owner-only encryption) opens without asking.
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD:
            raise LoadError("encrypted PDF: a password is needed to read it") from None
        raise LoadError(f"corrupt PDF: {short(exc)}") from None


# -- pages for OCR ----------------------------------------------------------------------------

def _is_scan(page: Any, text: str) -> bool:
    """Next to no text layer, and an image on the page to read it from."""
    import pypdfium2.raw as pdfium_c

    if len("".join(text.split())) >= _FEW_CHARS:
        return False
    images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])
    return next(iter(images), None) is not None


def _draw(document: Any, number: int, dpi: int) -> Image:
    """Page `number` in grey at `dpi` (less for a poster-sized page); PDFIUM_LOCK held."""
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
                return _draw(document, number, dpi)
            finally:
                document.close()
