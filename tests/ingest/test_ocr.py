"""Scanned pages and image files, read by the real OCR engine (Debian's tesseract): which
pages are read, what a page that cannot be read does to the others, the page cache, the
settings that bound and switch it off, and the page numbers and OCR mark that reach
retrieval."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import check_store, rag
from ocr_helpers import (
    PAGES,
    png_header,
    write_image,
    write_scanned_pdf,
    write_stamped_scan_pdf,
    write_text_pdf,
    write_tiff_with_damaged_frame,
)

from core.errors import LoadError
from core.settings import Settings
from ingest.loaders import file_type, load
from ingest.ocr import OcrReader
from ingest.pipeline import Progress, ingest
from ingest.store import open_store
from retrieval.service import RetrieveOptions, Retriever


def load_file(path: Path) -> Any:
    return load(path, path.read_bytes())


def reader(settings: Settings, **ingest: Any) -> OcrReader:
    cfg = settings.ingest.model_copy(update=ingest)
    return OcrReader(cfg, settings.data_dir / "ocr" / "pages.sqlite")


def words(text: str) -> set[str]:
    return {w.strip(".,").lower() for w in text.split()}


# -- which pages are read ---------------------------------------------------------------------

def test_pdf_pages_without_text_layer_are_marked_for_ocr(tmp_path: Path) -> None:
    scan = load_file(write_scanned_pdf(tmp_path / "scan.pdf"))
    assert (scan.scans, scan.pages, scan.sections) == ([1, 2], 2, [])
    text = load_file(write_text_pdf(tmp_path / "text.pdf", PAGES))
    assert text.scans == [] and [s.page for s in text.sections] == [1, 2]
    assert not any(s.ocr for s in text.sections)
    # A stamp over an image is not a text layer; a full page of text beside an image is.
    assert load_file(write_stamped_scan_pdf(tmp_path / "stamp.pdf", "ACME-000123")).scans == [1]
    assert load_file(write_stamped_scan_pdf(tmp_path / "text.pdf", "x " * 40)).scans == []


@pytest.mark.parametrize("name,format_", [
    ("note.png", "PNG"), ("note.jpg", "JPEG"), ("note.webp", "WEBP"), ("note.bmp", "BMP"),
])
def test_image_file_is_a_document_of_one_ocr_page(tmp_path: Path, settings: Settings,
                                                   name: str, format_: str) -> None:
    path = write_image(tmp_path / name, [["Harbour lanterns glow at dusk"]], format_)
    assert file_type(path) == "image"
    doc = load_file(path)
    reader(settings).read(doc)
    [section] = doc.sections
    assert (section.page, section.ocr, doc.type, doc.title) == (1, True, "image", "note")
    assert {"harbour", "lanterns", "glow", "dusk"} <= words(section.text)


def test_tiff_frames_are_pages(tmp_path: Path, settings: Settings) -> None:
    path = write_image(tmp_path / "fax.tiff", [["Barley harvest ledger"], ["Copper kettle receipts"]],
                       "TIFF")
    doc = load_file(path)
    reader(settings).read(doc)
    assert [(s.page, s.ocr) for s in doc.sections] == [(1, True), (2, True)]
    assert {"barley", "harvest"} <= words(doc.sections[0].text)
    assert {"copper", "kettle"} <= words(doc.sections[1].text)


def test_always_reads_text_layer_pages_too(tmp_path: Path, settings: Settings) -> None:
    doc = load_file(write_text_pdf(tmp_path / "text.pdf", PAGES[:1]))
    reader(settings, ocr="always").read(doc)
    [section] = doc.sections
    assert section.ocr and {"lighthouse", "batteries"} <= words(section.text)


# -- what cannot be read ----------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"plain words, not pixels" * 20, png_header(3, 3)[:30]],
                         ids=["text", "truncated-header"])
def test_not_an_image_is_a_one_line_reason(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    with pytest.raises(LoadError) as err:
        load_file(path)
    assert "\n" not in str(err.value) and "image" in str(err.value)


@pytest.mark.parametrize("side", [10_000, 30_000], ids=["over-limit", "over-twice-limit"])
def test_decompression_bomb_is_refused_in_one_line(tmp_path: Path, side: int,
                                                   recwarn: pytest.WarningsRecorder) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    with pytest.raises(LoadError, match="image refused: .*decompression bomb") as err:
        load_file(path)
    assert "\n" not in str(err.value)
    assert not [w for w in recwarn if "PIL" in w.filename], "a Pillow warning got through"


def test_damaged_frame_is_listed_and_the_others_kept(tmp_path: Path, settings: Settings,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    path = write_tiff_with_damaged_frame(tmp_path / "fax.tiff",
                                         [["Barley harvest ledger"], ["Copper kettle receipts"]])
    doc = load_file(path)
    reader(settings).read(doc)
    assert [s.page for s in doc.sections] == [1]
    assert {"barley", "harvest"} <= words(doc.sections[0].text)
    [note] = doc.notes
    assert note.startswith("OCR failed on page 2 (") and "\n" not in note
    assert "ZIPDecode" not in capfd.readouterr().err, "libtiff printed to the terminal"


def test_page_over_the_time_limit_is_listed_and_cached_pages_kept(
        tmp_path: Path, settings: Settings) -> None:
    first = load_file(write_scanned_pdf(tmp_path / "one.pdf", PAGES[:1]))
    reader(settings).read(first)  # page 1 now in the cache
    both = load_file(write_scanned_pdf(tmp_path / "two.pdf", PAGES))
    slow = reader(settings, ocr_page_timeout_s=0.001)
    slow.read(both)
    assert [(s.page, s.ocr) for s in both.sections] == [(1, True)]
    assert both.notes == ["OCR failed on page 2 (timed out after 0.001 s)"]
    assert (slow.pages_read, slow.pages_cached) == (0, 1)


def test_every_page_failing_fails_the_file_naming_them(tmp_path: Path, settings: Settings) -> None:
    doc = load_file(write_scanned_pdf(tmp_path / "scan.pdf"))
    with pytest.raises(LoadError, match=r"^OCR failed on page 1 \(timed out after 0.001 s\); "
                                        r"page 2 \(timed out"):
        reader(settings, ocr_page_timeout_s=0.001).read(doc)


def test_frames_over_the_bound_are_cut_with_a_note(tmp_path: Path, settings: Settings) -> None:
    path = write_image(tmp_path / "fax.tiff", [["Barley harvest ledger"], ["Copper kettle receipts"]],
                       "TIFF")
    doc = load_file(path)
    reader(settings, ocr_max_pages=1).read(doc)
    assert [s.page for s in doc.sections] == [1]
    assert doc.notes == ["OCR read 1 of 2 pages, the rest are left out (ingest.ocr_max_pages)"]


def test_ocr_off(tmp_path: Path, settings: Settings) -> None:
    off = reader(settings, ocr="off")
    with pytest.raises(LoadError, match=r"its pages are images and OCR is off \(ingest.ocr\)"):
        off.read(load_file(write_image(tmp_path / "note.png", [["Harbour lanterns"]], "PNG")))
    # A PDF with a text page and a scanned page keeps the text page and says what it left out.
    scan = write_scanned_pdf(tmp_path / "scan.pdf", PAGES[1:])
    mixed = _mixed_pdf(tmp_path / "mixed.pdf", write_text_pdf(tmp_path / "text.pdf", PAGES[:1]), scan)
    doc = load_file(mixed)
    assert doc.scans == [2]
    off.read(doc)
    assert [(s.page, s.ocr) for s in doc.sections] == [(1, False)]
    assert doc.notes == ["page 2 without a text layer left out: OCR is off (ingest.ocr)"]
    assert off.pages_read == 0


def _mixed_pdf(path: Path, *parts: Path) -> Path:
    from pypdf import PdfWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = PdfWriter()
    for part in parts:
        writer.append(str(part))
    with path.open("wb") as f:
        writer.write(f)
    return path


# -- through the pipeline ---------------------------------------------------------------------

@pytest.mark.slow
def test_changed_file_with_the_same_pages_runs_no_ocr(tmp_path: Path, settings: Settings,
                                                      ingest_paths: Any) -> None:
    path = write_scanned_pdf(tmp_path / "docs" / "scan.pdf", title="first")
    [first] = ingest_paths([path]).results
    assert (first.status, first.ocr_pages, first.ocr_cached) == ("new", 2, 0)
    write_scanned_pdf(path, title="second")  # other bytes, the same pages
    [again] = ingest_paths([path]).results
    assert (again.status, again.ocr_pages, again.ocr_cached) == ("updated", 0, 2)
    write_scanned_pdf(path, [PAGES[0], ["A new second page about", "the granite quarry."]])
    [neighbour] = ingest_paths([path]).results
    assert (neighbour.status, neighbour.ocr_pages, neighbour.ocr_cached) == ("updated", 1, 1)
    store = open_store(settings)
    try:
        [payloads] = check_store(store).values()
    finally:
        store.close()
    assert {(p["page"], p["ocr"]) for p in payloads} == {(1, True), (2, True)}
    assert "granite" in " ".join(p["text"] for p in payloads if p["page"] == 2)


@pytest.mark.slow
def test_scanned_pdf_is_found_by_rag_retrieve_with_its_page(tmp_path: Path,
                                                           settings: Settings) -> None:
    docs = tmp_path / "docs"
    write_scanned_pdf(docs / "scan.pdf")
    write_tiff_with_damaged_frame(docs / "fax.tiff", [["Barley harvest ledger"], ["lost"]])
    data = tmp_path / "data"
    ingest = rag("ingest", docs, data_dir=data, cwd=tmp_path, settings=settings, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    assert f"note    {docs / 'fax.tiff'}: OCR failed on page 2 (" in ingest.stderr
    assert "3 pages (0 from the cache)" in ingest.stdout  # the damaged frame is not counted
    found = rag("retrieve", "What were the copper kettles traded for?", "--json", "--context",
                "retrieve", data_dir=data, cwd=tmp_path, settings=settings, timeout=300)
    assert found.returncode == 0, found.stderr
    top = json.loads(found.stdout)["passages"]
    best = max(top, key=lambda p: p["score"])
    assert (Path(best["source"]).name, best["page"], best["ocr"]) == ("scan.pdf", 2, True)
    assert "barley" in best["text"].lower()


@pytest.mark.slow
def test_retriever_passage_carries_ocr_and_page(tmp_path: Path, settings: Settings,
                                                ingest_paths: Any, embedder: Any,
                                                counter: Any) -> None:
    text = write_text_pdf(tmp_path / "parts" / "text.pdf", PAGES[:1])
    scan = write_scanned_pdf(tmp_path / "parts" / "scan.pdf", PAGES[1:])
    mixed = _mixed_pdf(tmp_path / "docs" / "mixed.pdf", text, scan)
    [result] = ingest_paths([mixed]).results
    assert (result.status, result.ocr_pages) == ("new", 1)
    store = open_store(settings)
    try:
        retriever = Retriever(settings, store, embedder, counter)
        passages = retriever.retrieve("copper kettles traded for barley",
                                      RetrieveOptions(context_mode="retrieve")).packing.passages
    finally:
        store.close()
    by_page = {p.page: p for p in passages}
    assert by_page[2].ocr and "kettles" in by_page[2].text
    assert 1 not in by_page or not by_page[1].ocr


class _Events(Progress):
    """What the pipeline reported, in order, with the thread that reported it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def embedded(self, chunks: int) -> None:
        self.events.append(("embedded", threading.current_thread().name, chunks))

    def ocr_page(self, path: str, done: int, pages: int) -> None:
        self.events.append((f"ocr {Path(path).name} {done}/{pages}",
                            threading.current_thread().name, done))


@pytest.mark.slow
def test_ocr_runs_on_the_parse_thread_while_parsed_chunks_embed(
        tmp_path: Path, settings: Settings, embedder: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The harbour master keeps a ledger of every ship in the bay.")
    # Four different pages (a repeated one would come from the cache): seconds of OCR.
    pages = [[f"Page {n} of the harbour ledger", f"lists {n * 7} ships and {n + 2} wrecks."]
             for n in range(1, 5)]
    write_scanned_pdf(docs / "b.pdf", pages)
    events = _Events()
    report = ingest(settings, [docs], progress=events, embedder=embedder)
    assert [r.status for r in report.results] == ["new", "new"]
    names = [e[0] for e in events.events]
    ocr = [e for e in events.events if e[0].startswith("ocr")]
    assert [e[0] for e in ocr] == [f"ocr b.pdf {n}/4" for n in range(5)]
    assert {e[1] for e in ocr} == {"ingest-parse"}
    # a.md's chunks were embedded while b.pdf's pages were still being read.
    assert names.index("embedded") < names.index("ocr b.pdf 4/4"), names


def test_a_missing_engine_keeps_the_text_pages(tmp_path: Path, settings: Settings) -> None:
    class Missing:
        """An engine that is not installed: what make_engine raises then."""

        name = "missing"

        def __init__(self) -> None:
            raise LoadError("OCR engine 'x' is not installed")

    class Reader(OcrReader):
        @property
        def engine(self) -> Any:
            return Missing()

    scan = write_scanned_pdf(tmp_path / "scan.pdf", PAGES[1:])
    doc = load_file(_mixed_pdf(tmp_path / "mixed.pdf", write_text_pdf(tmp_path / "t.pdf", PAGES[:1]),
                               scan))
    Reader(settings.ingest, tmp_path / "cache.sqlite").read(doc)
    assert [(s.page, s.ocr) for s in doc.sections] == [(1, False)]
    assert doc.notes == ["page 2 without a text layer left out: OCR engine 'x' is not installed"]
    with pytest.raises(LoadError, match="^OCR engine 'x' is not installed$"):
        Reader(settings.ingest, tmp_path / "cache.sqlite").read(load_file(scan))
