"""A PDF read a page at a time as it is chunked (ingest/loaders/pdf.py's `stream_pdf`, with
OCR of its scanned pages as they come, ingest/ocr.py's `stream`): the same chunks, notes and
failures as the whole document loaded at once, its first chunks embedded before its last
page is read, and an RSS (read from /proc) that does not grow with the pages."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from ingest_helpers import ROOT
from ocr_helpers import PAGES, write_scanned_pdf, write_stamped_scan_pdf, write_text_pdf
from test_tables import write_table_pdf

from bench.ingest_memory import write_photo_pdf
from core.errors import LoadError
from core.settings import Settings
from ingest.chunker import Chunk, Chunker
from ingest.loaders import load, load_path
from ingest.ocr import OcrReader
from ingest.pipeline import Progress, ingest


def join_pdfs(path: Path, *parts: Path, title: str = "") -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for part in parts:
        writer.append(str(part))
    if title:
        writer.add_metadata({"/Title": title})
    with path.open("wb") as f:
        writer.write(f)
    return path


def mixed_pdf(root: Path) -> Path:
    """Text pages long enough for several chunks, a ruled table, an empty page, two scanned
    pages and a stamped scan, with a title."""
    root.mkdir(parents=True, exist_ok=True)
    sentences = F.distinct_sentences(random.Random(5), 90)
    long_pages = [[" ".join(s.split()[:12]) for s in sentences[i:i + 30]] for i in (0, 30, 60)]
    return join_pdfs(
        root / "mixed.pdf",
        F.write_pdf(root / "text.pdf", long_pages[:2]),
        write_table_pdf(root / "table.pdf"),
        F.write_textless_pdf(root / "blank.pdf", pages=1),
        write_scanned_pdf(root / "scan.pdf", PAGES),
        write_stamped_scan_pdf(root / "stamp.pdf", "ACME-000123"),
        F.write_pdf(root / "last.pdf", long_pages[2:]),
        title="Harbour records",
    )


def reader(settings: Settings, **ingest_: Any) -> OcrReader:
    cfg = settings.ingest.model_copy(update=ingest_)
    return OcrReader(cfg, settings.data_dir / "ocr" / "pages.sqlite")


def whole(path: Path, ocr: OcrReader, chunker: Chunker) -> tuple[list[Chunk], Any]:
    """The chunks of the PDF loaded at once, as before streaming."""
    doc = load(path, path.read_bytes())
    ocr.read(doc)
    return chunker.split(doc.sections), doc


def streamed(path: Path, ocr: OcrReader, chunker: Chunker) -> tuple[list[Chunk], Any]:
    doc = load_path(path)
    assert doc.stream is not None and not doc.sections
    return list(chunker.stream(ocr.stream(doc))), doc


@pytest.mark.slow
@pytest.mark.parametrize("ocr", [{}, {"ocr_max_pages": 2}, {"ocr": "off"}])
def test_a_streamed_pdf_gives_the_chunks_of_the_whole_pdf(
        tmp_path: Path, settings: Settings, counter: Any, ocr: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.loaders.pdf as pdf

    monkeypatch.setattr(pdf, "_REOPEN_PAGES", 3)  # the document is opened again midway
    path = mixed_pdf(tmp_path / "docs")
    chunker = Chunker(counter, 64, 8)
    before, doc = whole(path, reader(settings, **ocr), chunker)
    after, streamed_doc = streamed(path, reader(settings, **ocr), chunker)
    assert after == before
    assert (streamed_doc.title, streamed_doc.pages, streamed_doc.notes) == (
        doc.title, doc.pages, doc.notes) == ("Harbour records", 9, doc.notes)
    pages = {c.page for c in after}
    assert {1, 2, 3, 9} <= pages and 5 not in pages  # page 5 is blank
    assert any("| --- |" in c.text for c in after if c.page == 3)
    if not ocr:
        assert {c.page for c in after if c.ocr} == {6, 7, 8}
        assert not doc.notes
    else:
        assert doc.notes, "a bound or OCR off is noted"


@pytest.mark.parametrize("ocr,reason", [
    ({}, "no text could be extracted (no text layer, and no images for OCR to read)"),
    ({"ocr": "off"}, "no text could be extracted (no text layer, and no images for OCR to read)"),
])
def test_a_streamed_pdf_without_text_fails_as_the_whole_one(
        tmp_path: Path, settings: Settings, counter: Any, ocr: dict[str, Any],
        reason: str) -> None:
    path = F.write_textless_pdf(tmp_path / "shapes.pdf", pages=3)
    with pytest.raises(LoadError) as was:
        load(path, path.read_bytes())
    with pytest.raises(LoadError) as now:
        streamed(path, reader(settings, **ocr), Chunker(counter, 64, 8))
    assert str(now.value) == str(was.value) == reason


def test_a_streamed_scan_with_ocr_off_fails_as_the_whole_one(
        tmp_path: Path, settings: Settings, counter: Any) -> None:
    path = write_scanned_pdf(tmp_path / "scan.pdf", PAGES[:1])
    off = reader(settings, ocr="off")
    with pytest.raises(LoadError) as was:
        whole(path, off, Chunker(counter, 64, 8))
    with pytest.raises(LoadError) as now:
        streamed(path, off, Chunker(counter, 64, 8))
    assert str(now.value) == str(was.value)
    assert "OCR is off (ingest.ocr)" in str(now.value)


class _Events(Progress):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def embedded(self, chunks: int) -> None:
        with self.lock:
            self.events.append("embedded")

    def ocr_page(self, path: str, done: int, pages: int) -> None:
        with self.lock:
            self.events.append(f"ocr {done}/{pages}")


@pytest.mark.slow
def test_a_pdf_is_embedded_while_its_later_pages_are_read(tmp_path: Path, make_settings: Any,
                                                         embedder: Any) -> None:
    """Before streaming every scanned page was read before the first chunk was cut."""
    pages = [[f"Page {n} of the harbour ledger", f"lists {n * 7} ships and {n + 2} wrecks."]
             for n in range(1, 4)]
    path = join_pdfs(tmp_path / "ledger.pdf", write_text_pdf(tmp_path / "a.pdf", PAGES),
                     write_scanned_pdf(tmp_path / "b.pdf", pages))
    settings = make_settings(tmp_path / "data", embedding={"batch_size": 2})
    events = _Events()
    [result] = ingest(settings, [path], progress=events, embedder=embedder).results
    assert (result.status, result.ocr_pages) == ("new", 3)
    # Pages 3-5 are scanned: at most they, and the pages not yet parsed, are still to read.
    ocr = [e for e in events.events if e.startswith("ocr")]
    assert ocr == ["ocr 0/3", "ocr 1/3", "ocr 2/3", "ocr 3/3"]
    assert events.events.index("embedded") < events.events.index("ocr 2/3"), events.events


_PEAK_OF_INGEST = """
import runpy, sys
from pathlib import Path
sys.argv = ["rag", "--data-dir", sys.argv[1], "ingest", sys.argv[2]]
try:
    runpy.run_module("app.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
status = Path("/proc/self/status").read_text().splitlines()
peak = next(line for line in status if line.startswith("VmHWM:"))
print("PEAK", code, int(peak.split()[1]) // 1024)
"""


def _peak_rss_of_ingest(data_dir: Path, path: Path) -> int:
    """Peak RSS (MB, VmHWM) of a fresh `rag ingest PATH` process: no other test's memory."""
    done = subprocess.run([sys.executable, "-c", _PEAK_OF_INGEST, str(data_dir), str(path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    [line] = [x for x in done.stdout.splitlines() if x.startswith("PEAK ")]
    _, code, peak = line.split()
    assert code in ("0", "None"), done.stdout + done.stderr
    return int(peak)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_does_not_grow_with_the_pages_of_a_pdf(tmp_path: Path) -> None:
    """600 pages of 100 KB photos (62 MB) through `rag ingest`, against 60 such pages, each
    in a fresh process: the whole file in memory, and PDFium's copy of every page's image it
    read, took 87 MB more for the 600 before streaming; read a page at a time from the file,
    PDFium holds 32 pages' worth. Every page's text is the same, so one chunk is embedded;
    the store's `optimize` at the end of a run is the same transient for both."""
    few, many = (write_photo_pdf(tmp_path / f"photos-{n}.pdf", n) for n in (60, 600))
    assert many.stat().st_size > 60e6
    grew = [_peak_rss_of_ingest(tmp_path / f"data-{i}", path)
            for i, path in enumerate((few, many))]
    assert grew[1] - grew[0] < 40, f"peak RSS: 60 pages {grew[0]} MB, 600 pages {grew[1]} MB"
