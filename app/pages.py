"""A stored PDF's page as a PNG, with a quoted sentence's characters highlighted.

Only a stored document's own file is ever opened: the path comes from the store (the source
path it was ingested from; an upload's copy under data/uploads), and its bytes must still be
the ingested ones (SHA-256 against the stored file hash), so a moved, deleted or changed
file is refused rather than drawn with the wrong highlight. PDFium draws the page and its
text page gives the rectangles of the quote's characters (FPDFText_CountRects/GetRect: the
character boxes of each line merged), found in the page text with whitespace, punctuation
and case folded. Images are kept in a small in-process cache keyed by the file's identity.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import NotFoundError, RagError
from ingest.loaders.pdf import PDFIUM_LOCK
from ingest.payload import ChunkPayload, first_chunks
from ingest.store import Store, Where

MIN_WIDTH, DEFAULT_WIDTH, MAX_WIDTH = 200, 1000, 2000
_MAX_PIXELS = 8_000_000  # a poster-sized page is drawn narrower than asked
_CACHED_PAGES = 64
HIGHLIGHT = (255, 200, 0, 110)  # translucent yellow over the text
# A quote not found whole is highlighted where its longest run of characters is, if that
# run is at least this share of it (the rest differs: a hyphenated line end, a table).
_MIN_PARTIAL = 0.5


class NotRenderableError(RagError):
    """The document has no pages to draw (not a PDF, or carried inside another file)."""


class PageOutOfRangeError(NotFoundError):
    """The document has no such page."""


class SourceGoneError(RagError):
    """The original file is no longer where it was ingested from, or has changed since."""


@dataclass(frozen=True)
class PageImage:
    png: bytes
    highlight: str  # exact | partial | none | "" (nothing asked)
    width: int
    height: int


def stored_entry(store: Store, document_id: str) -> ChunkPayload:
    """The manifest entry of the live document with exactly this id."""
    for point in store.scroll(first_chunks().and_(Where(equals={"document_id": document_id}))):
        return ChunkPayload.from_payload(point.payload).manifest_entry()
    raise NotFoundError(f"no stored document with id '{document_id}'")


def page_image(entry: ChunkPayload, number: int, highlight: str = "",
               width: int = DEFAULT_WIDTH) -> PageImage:
    """Page `number` (1-based) of the document, `width` pixels wide (bounded), with
    `highlight` marked where the page's text holds it."""
    if entry.type != "pdf" or entry.parent is not None:
        what = "is carried inside another file" if entry.parent else f"is a {entry.type} file"
        raise NotRenderableError(f"document '{entry.document_id}' {what}: only stored PDFs "
                                 "are shown as page images")
    pages = entry.pages or 0
    if not 1 <= number <= pages:
        raise PageOutOfRangeError(f"page {number}: document '{entry.document_id}' has "
                                  f"{pages} page{'s' * (pages != 1)}")
    path = Path(entry.source)
    stat = _stat(path, entry)
    if not _same_file(str(path), stat.st_mtime_ns, stat.st_size, entry.file_hash,
                      entry.size_bytes):
        raise SourceGoneError(f"{entry.source} has changed since it was ingested: ingest it "
                              "again to see its pages")
    width = min(max(width, MIN_WIDTH), MAX_WIDTH)
    return _render(str(path), stat.st_mtime_ns, stat.st_size, number, highlight.strip(), width)


def _stat(path: Path, entry: ChunkPayload) -> Any:
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        raise SourceGoneError(f"{entry.source} is no longer there (moved or deleted): its "
                              "passages are shown as text")
    return stat


@lru_cache(maxsize=256)
def _same_file(path: str, mtime_ns: int, size: int, file_hash: str, size_bytes: int) -> bool:
    """The file's bytes are the ingested ones (by hash; by size for entries without one)."""
    if not file_hash:
        return size == size_bytes
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == file_hash


@lru_cache(maxsize=_CACHED_PAGES)
def _render(path: str, mtime_ns: int, size: int, number: int, quote: str,
            width: int) -> PageImage:
    import pypdfium2 as pdfium

    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(path)
        except pdfium.PdfiumError:
            raise SourceGoneError(f"{path} can no longer be read as a PDF") from None
        try:
            page = document[number - 1]
            try:
                w, h = page.get_size()
                scale = min(width / w, math.sqrt(_MAX_PIXELS / max(w * h, 1.0)))
                image = page.render(scale=scale).to_pil().convert("RGB")
                rects, how = _quote_rects(page, quote) if quote else ([], "")
                box = page.get_cropbox()
                rotated = page.get_rotation() != 0
            finally:
                page.close()
        finally:
            document.close()
    if rotated and rects:  # the rectangles are in unrotated page space
        rects, how = [], "none"
    return PageImage(_png(image, rects, box, scale), how, image.width, image.height)


def _quote_rects(page: Any, quote: str) -> tuple[list[tuple[float, float, float, float]], str]:
    textpage = page.get_textpage()
    try:
        start, end, how = locate(textpage.get_text_range(), quote)
        if how == "none":
            return [], how
        count = textpage.count_rects(start, end - start)
        return [textpage.get_rect(i) for i in range(count)], how
    finally:
        textpage.close()


def _fold(text: str) -> tuple[str, list[int]]:
    """Letters and digits only, lower-cased, with each one's index in `text`."""
    kept = [(c.lower(), i) for i, c in enumerate(text) if c.isalnum()]
    return "".join(c for c, _ in kept), [i for _, i in kept]


def locate(page_text: str, quote: str) -> tuple[int, int, str]:
    """(start, end, how) of `quote` in `page_text`: `exact` when all of it is there (case,
    spaces, line breaks and punctuation aside), `partial` for its longest run when that is
    at least half of it, else (0, 0, "none")."""
    folded, where = _fold(page_text)
    wanted, _ = _fold(quote)
    if not wanted or not folded:
        return 0, 0, "none"
    at = folded.find(wanted)
    if at >= 0:
        end = where[at + len(wanted) - 1] + 1
        tail = quote.rstrip()[-1:]
        if tail and not tail.isalnum() and page_text[end:end + 1] == tail:
            end += 1  # the closing full stop (or bracket) the fold left out
        return where[at], end, "exact"
    match = difflib.SequenceMatcher(None, folded, wanted, autojunk=False).find_longest_match()
    if match.size >= _MIN_PARTIAL * len(wanted):
        return where[match.a], where[match.a + match.size - 1] + 1, "partial"
    return 0, 0, "none"


def _png(image: Any, rects: list[tuple[float, float, float, float]],
         box: tuple[float, float, float, float], scale: float) -> bytes:
    """The page with each rectangle (PDF points: left, bottom, right, top) painted over."""
    from PIL import Image, ImageDraw

    if rects:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        left, _, _, top = box
        for x0, y0, x1, y1 in rects:
            draw.rectangle([(x0 - left) * scale - 1, (top - y1) * scale - 1,
                            (x1 - left) * scale + 1, (top - y0) * scale + 1], fill=HIGHLIGHT)
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
