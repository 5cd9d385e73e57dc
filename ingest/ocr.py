"""OCR of pages without a text layer (scanned PDF pages, image files).

Three parts: the engine, behind a two-method interface and picked by `ingest.ocr_engine`
(bench/loaders_ocr.py measures both); a cache of page texts keyed by what the page looks
like, so a re-run or a changed neighbour page reads nothing again; and the stage that reads a
loaded document's scanned pages and puts their text among its sections. The stage runs on
the pipeline's parse thread, beside the embedder: the engines work outside the GIL
(Tesseract in its own process, ONNX Runtime in native code).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.errors import LoadError
from core.settings import IngestSettings
from ingest.loaders.base import LoadedDocument, PageRenderer, Section, clean, no_text_error, short

if TYPE_CHECKING:
    from PIL.Image import Image

PageProgress = Callable[[int, int], None]  # (pages done, of N): before the first, after each
_LISTED = 5  # failed pages named in a note; the rest are counted
# One OpenMP thread: tesseract runs beside the embedder, and its threads spin while they
# wait; on two busy cores a page took 60 s with two threads and 5.8 s with one.
_TESSERACT_ENV = {"OMP_THREAD_LIMIT": "1"}


class PageError(Exception):
    """One page could not be read; its message is the reason listed for the page."""


class OcrEngine(Protocol):
    name: str  # engine, version and language: part of every cache key

    def read(self, image: Image, timeout_s: float) -> str: ...


class TesseractEngine:
    """Debian's tesseract-ocr, one process per page: the time limit kills it cleanly and a
    crash takes only that page. The page goes in as PNG on stdin and the text comes back on
    stdout; our own call rather than pytesseract's, which cannot set the process's
    environment."""

    def __init__(self) -> None:
        binary = shutil.which("tesseract")
        if binary is None:
            raise LoadError("OCR engine 'tesseract' is not installed (apt-get install "
                            "tesseract-ocr tesseract-ocr-eng), or set ingest.ocr_engine")
        self._binary = binary
        about = subprocess.run([binary, "--version"], capture_output=True, timeout=30,
                               env=_TESSERACT_ENV)
        words = about.stdout.decode(errors="replace").split()
        self.name = f"tesseract-{words[1] if len(words) > 1 else 'unknown'}-eng"

    def read(self, image: Image, timeout_s: float) -> str:
        png = io.BytesIO()
        image.save(png, format="PNG", compress_level=1)
        command = [self._binary, "stdin", "stdout", "-l", "eng"]
        dpi = image.info.get("dpi")
        if dpi:  # else tesseract estimates it from the letters' size
            command += ["--dpi", str(round(dpi[0]))]
        try:
            done = subprocess.run(command, input=png.getvalue(), capture_output=True,
                                  timeout=timeout_s, env=_TESSERACT_ENV)
        except subprocess.TimeoutExpired:
            raise PageError(f"timed out after {timeout_s:g} s") from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            last = " ".join(lines[-1].split())[:160] if lines else f"exit status {done.returncode}"
            raise PageError(f"tesseract failed: {last}")
        return done.stdout.decode("utf-8", errors="replace")


class RapidOcrEngine:
    """RapidOCR (PP-OCR models on ONNX Runtime, inside the wheel). It runs in this process and
    cannot be stopped mid-page: past the time limit the page is listed as failed, and the next
    page waits for the engine to finish it."""

    def __init__(self) -> None:
        try:
            from importlib.metadata import version

            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise LoadError("OCR engine 'rapidocr' is not installed (pip install "
                            "rapidocr-onnxruntime), or set ingest.ocr_engine") from None
        # One thread, as tesseract: it runs beside the embedder.
        self._ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rapidocr")
        self.name = f"rapidocr-{version('rapidocr-onnxruntime')}"

    def read(self, image: Image, timeout_s: float) -> str:
        import numpy as np

        pixels = np.asarray(image.convert("RGB"))
        job = self._worker.submit(self._ocr, pixels)
        try:
            found, _ = job.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise PageError(f"timed out after {timeout_s:g} s") from None
        except Exception as exc:  # the engine's own failure on this page
            raise PageError(f"rapidocr failed: {type(exc).__name__}: {short(exc)}") from None
        # One detected text line per entry (box, text, score), top to bottom.
        return "\n".join(str(line[1]) for line in found or [])


def make_engine(name: str) -> OcrEngine:
    if name == "rapidocr":
        return RapidOcrEngine()
    return TesseractEngine()


class PageCache:
    """Page texts by page hash, in one SQLite file. Opened on first use; every write commits,
    so a killed run keeps the pages it read."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS pages (key TEXT PRIMARY KEY, "
                             "text TEXT NOT NULL)")
        return self._db

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._open().execute("SELECT text FROM pages WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._open().execute("INSERT OR REPLACE INTO pages VALUES (?, ?)", (key, text))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def page_key(engine: str, image: Image) -> str:
    """What decides a page's OCR text: the engine and the page's pixels."""
    digest = hashlib.sha256(f"{engine}|{image.mode}|{image.width}x{image.height}|".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class OcrReader:
    """Reads the scanned pages of loaded documents, as `ingest.ocr` says. Counts the pages it
    read (`pages_read`) and those it found in the cache (`pages_cached`)."""

    def __init__(self, settings: IngestSettings, cache_path: Path,
                 engine: OcrEngine | None = None):
        self.settings = settings
        self.cache = PageCache(cache_path)
        self._engine = engine
        self.pages_read = 0
        self.pages_cached = 0

    @property
    def engine(self) -> OcrEngine:
        if self._engine is None:
            self._engine = make_engine(self.settings.ocr_engine)
        return self._engine

    def read(self, doc: LoadedDocument, progress: PageProgress | None = None) -> None:
        """Puts the OCR text of `doc`'s scanned pages among its sections (in page order) and
        notes what was left out; a LoadError when the document ends up with no text."""
        render, doc.render = doc.render, None  # it holds the file's bytes
        if not doc.scans and (render is None or self.settings.ocr != "always"):
            return  # no page to read: the loader kept only documents with text
        pages = _pages_of(doc)
        wanted = [p for p in pages if p.page is not None and self._wanted(p, render)]
        total = min(len(wanted), self.settings.ocr_max_pages)
        doc.sections = list(self._sections(doc, pages, render, progress, total))

    def stream(self, doc: LoadedDocument, progress: PageProgress | None = None
               ) -> Iterator[Section]:
        """The sections of `doc.stream` (one a page, those without a text layer marked
        `scan`, as ingest/loaders/pdf.py's `stream_pdf` gives them) as `read` would leave
        them: scanned pages read as they come, empty pages dropped; the notes are added and
        a LoadError raised when the stream ends. `progress` is told of at most as many pages
        as may still be read (scanned pages found so far and the pages not yet parsed)."""
        assert doc.stream is not None
        render, doc.render = doc.render, None
        return self._sections(doc, doc.stream, render, progress, None)

    def _wanted(self, page: Section, render: PageRenderer | None) -> bool:
        mode = self.settings.ocr
        return mode != "off" and render is not None and (mode == "always" or page.scan)

    def _sections(self, doc: LoadedDocument, pages: Iterable[Section],
                  render: PageRenderer | None, progress: PageProgress | None,
                  total: int | None) -> Iterator[Section]:
        """The pages' sections, with the OCR text of those to read (`ingest.ocr`, at most
        `ocr_max_pages`) in place of their text layer; `total`: the pages to read, when
        known. Notes what was left out once the pages are done."""
        read = _Reading()
        limit = self.settings.ocr_max_pages
        for number, page in enumerate(pages, 1):
            read.seen(page)
            section = replace(page, scan=False)
            if (self._wanted(page, render) and page.page is not None
                    and read.wants(page.page, limit) and (engine := self._engine_of(read))):
                assert render is not None
                if progress is not None:
                    left = (doc.pages or 0) - number
                    progress(len(read.pages) - 1, total or min(len(read.pages) + left, limit))
                text = self._read_one(engine, render, page.page, read.failed)
                if text:
                    section = Section(text, page.page, ocr=True)
            if section.text:
                read.kept = True
                yield section
        if progress is not None and read.pages and read.missing is None:
            progress(len(read.pages), len(read.pages))
        self._finish(doc, read, render)

    def _engine_of(self, read: _Reading) -> OcrEngine | None:
        """The engine; None once it is found missing (`read.missing` says why)."""
        if read.missing is None:
            try:
                return self.engine
            except LoadError as exc:  # not installed: the pages with a text layer still count
                read.missing = exc
        return None

    def _read_one(self, engine: OcrEngine, render: PageRenderer, page: int,
                  failed: dict[int, str]) -> str:
        """The page's OCR text; "" when there is none or the page failed (listed in
        `failed` with the reason)."""
        try:
            return self._read_page(engine, render(page, self.settings.ocr_dpi))
        except (PageError, LoadError) as exc:
            failed[page] = str(exc)
        except OSError as exc:  # Pillow's decoder on a damaged frame
            failed[page] = f"damaged image: {short(exc)}"
        except Exception as exc:  # PDFium or a decoder on one damaged page
            failed[page] = f"{type(exc).__name__}: {short(exc)}"
        return ""

    def _finish(self, doc: LoadedDocument, read: _Reading, render: PageRenderer | None) -> None:
        """The notes on what was left out; a LoadError when no page has text."""
        if not read.text and not read.scans:
            raise no_text_error(doc.type)
        if self.settings.ocr == "off" or render is None:
            if read.scans and read.text:
                doc.notes.append(f"{_pages_text(read.scans)} without a text layer left out: "
                                 "OCR is off (ingest.ocr)")
        elif read.wanted > self.settings.ocr_max_pages:
            doc.notes.append(f"OCR read {self.settings.ocr_max_pages:,} of {read.wanted:,} "
                             "pages, the rest are left out (ingest.ocr_max_pages)")
        if read.missing is not None:
            if not read.text:
                raise read.missing
            doc.notes.append(f"{_pages_text(read.pages)} without a text layer left out: "
                             f"{read.missing}")
        if read.failed:
            doc.notes.append(failed_note(read.failed))
        if not read.kept:
            if read.failed:
                raise LoadError(failed_note(read.failed))
            if self.settings.ocr == "off":
                raise LoadError("no text could be extracted: its pages are images and OCR is "
                                "off (ingest.ocr)")
            raise LoadError("no text could be extracted (OCR found none)")

    def _read_page(self, engine: OcrEngine, image: Image) -> str:
        key = page_key(engine.name, image)
        text = self.cache.get(key)
        if text is not None:
            self.pages_cached += 1
            return text
        text = clean(engine.read(image, self.settings.ocr_page_timeout_s))
        self.pages_read += 1
        self.cache.put(key, text)
        return text

    def close(self) -> None:
        self.cache.close()


@dataclass
class _Reading:
    """What the OCR of one document's pages has met so far."""

    scans: list[int] = field(default_factory=list)  # pages without a text layer
    pages: list[int] = field(default_factory=list)  # pages to read, up to ocr_max_pages
    wanted: int = 0  # pages to read, before the bound
    text: bool = False  # a page had text of its own
    kept: bool = False  # a section was kept (its own text, or OCR's)
    failed: dict[int, str] = field(default_factory=dict)
    missing: LoadError | None = None  # the engine is not installed

    def seen(self, page: Section) -> None:
        if page.scan and page.page is not None:
            self.scans.append(page.page)
        self.text = self.text or bool(page.text)

    def wants(self, page: int, limit: int) -> bool:
        """`page` is one more to read: True while within the bound."""
        self.wanted += 1
        if self.wanted > limit:
            return False
        self.pages.append(page)
        return True


def _pages_of(doc: LoadedDocument) -> list[Section]:
    """A loaded document as one Section a page, in page order (empty for a page without
    text), its scanned pages marked: what a streamed PDF gives."""
    by_page = {s.page: s for s in doc.sections if s.page is not None}
    count = max([doc.pages or 0, *doc.scans, *by_page])
    scans = set(doc.scans)
    pages = [s for s in doc.sections if s.page is None]
    for number in range(1, count + 1):
        own = by_page.get(number, Section("", number))
        pages.append(replace(own, scan=number in scans))
    return pages


def failed_note(failed: dict[int, str]) -> str:
    """`OCR failed on page 2 (timed out after 60 s); page 5 (...)`, the first few named."""
    listed = [f"page {page} ({reason})" for page, reason in sorted(failed.items())[:_LISTED]]
    more = f"; {len(failed) - _LISTED} more" if len(failed) > _LISTED else ""
    return "OCR failed on " + "; ".join(listed) + more


def _pages_text(pages: list[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:_LISTED])
    more = f" and {len(pages) - _LISTED} more" if len(pages) > _LISTED else ""
    return f"page{'s' if len(pages) > 1 else ''} {shown}{more}"

