"""The chunk cache with the real Llama 3 tokenizer and chunker: its chunks are the chunker's
own, field for field, through the pipeline too; an edited page is cut again and only it
(counted on the sections the real chunker receives); restarts, the bound, and a damaged file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from ingest_helpers import check_store

from core.settings import Settings
from ingest.chunk_cache import CachedChunker, chunks_path
from ingest.chunker import Chunk, Chunker
from ingest.loaders import Section
from ingest.pipeline import ingest
from ingest.store import open_store
from ingest.tokenizer import TokenCounter

PAGES = [
    [f"Page {p}, line {i}: the keeper of the {w} lighthouse wrote down the {w} of the day."
     for i, w in enumerate(["tides", "storms", "ferries", "fog", "gulls", "lamps"])]
    for p in range(1, 7)
]
TABLE = ("| year | ships |\n| --- | --- |\n"
         + "".join(f"| {1900 + i} | {i * 3} ferries and {i} schooners |\n" for i in range(30)))


class CountingChunker(Chunker):
    """The real chunker, keeping the text of every section it is asked to cut."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.texts: list[str] = []

    def stream(self, sections: Iterable[Section]) -> Iterator[Chunk]:
        def counted() -> Iterator[Section]:
            for section in sections:
                self.texts.append(section.text)
                yield section

        return super().stream(counted())


@pytest.fixture
def counting_stream(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts of the sections the pipeline's real chunker cuts, in order."""
    texts: list[str] = []
    real = Chunker.stream

    def stream(self: Chunker, sections: Iterable[Section]) -> Iterator[Chunk]:
        def counted() -> Iterator[Section]:
            for section in sections:
                texts.append(section.text)
                yield section

        return real(self, counted())

    monkeypatch.setattr(Chunker, "stream", stream)
    return texts


def sections() -> list[Section]:
    """Pages of prose, a table cut in several chunks, an empty page, an OCR page with a
    label, and a long text read in three pieces (`more`)."""
    prose = [Section(" ".join(lines), page=n) for n, lines in enumerate(PAGES, 1)]
    return [*prose[:3], Section(TABLE, page=4), Section("", page=5),
            Section(" ".join(PAGES[4]), page=6, ocr=True, label="scan 6"),
            Section(" ".join(PAGES[5]) + " ", page=7, more=True),
            Section(" ".join(PAGES[0]) + " ", page=7, more=True),
            Section(" ".join(PAGES[1]), page=7), *prose[3:]]


def test_cached_chunks_are_the_chunkers_own(tmp_path: Path, counter: TokenCounter) -> None:
    real = CountingChunker(counter, size=48, overlap=8)
    expected = Chunker(counter, size=48, overlap=8).split(sections())
    assert len({c.section for c in expected}) == len(sections()) - 3 and len(expected) > 30
    first = CachedChunker(real, tmp_path / "c.sqlite", 1)
    assert first.split(sections()) == expected
    assert (first.hits, first.misses) == (0, 9)  # the three pieces of one text are not kept
    first.close()
    real.texts.clear()
    again = CachedChunker(real, tmp_path / "c.sqlite", 1)  # a restart
    assert again.split(sections()) == expected
    assert (again.hits, again.misses) == (9, 0)
    assert real.texts == [s.text for s in sections() if s.page == 7]
    other = CachedChunker(Chunker(counter, size=64, overlap=8), tmp_path / "c.sqlite", 1)
    other.split(sections()[:2])
    assert other.hits == 0  # other settings: other keys


def test_bound_drops_least_recently_used(tmp_path: Path, counter: TokenCounter) -> None:
    cache = CachedChunker(Chunker(counter, size=48, overlap=8), tmp_path / "c.sqlite", 0.004)
    keep = Section("A page that is read again and again, every time.")
    pages = [Section(f"Page {i}: " + " ".join(PAGES[i % 6])) for i in range(40)]
    for page in pages:
        cache.split([keep, page])
        assert cache.entries() < 12
    hits = cache.hits
    cache.split([keep])
    cache.split(pages[:1])
    assert cache.hits == hits + 1  # the oldest went first, the one in use stayed


def test_damaged_file_chunks_without_it(tmp_path: Path, counter: TokenCounter,
                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    chunker = Chunker(counter, size=48, overlap=8)
    cache = CachedChunker(chunker, path, 1)
    assert cache.split(sections()) == chunker.split(sections())
    assert "chunk cache" in caplog.text and cache.hits == 0


def test_cache_off_cuts_everything(tmp_path: Path, counter: TokenCounter) -> None:
    real = CountingChunker(counter, size=48, overlap=8)
    cache = CachedChunker(real, tmp_path / "c.sqlite", 0)
    cache.split(sections())
    cache.split(sections())
    assert len(real.texts) == 2 * len(sections()) and not (tmp_path / "c.sqlite").exists()


def stored_chunks(settings: Settings) -> list[dict[str, Any]]:
    """The live payloads of the store's one document, in chunk order, less the time of the
    ingest."""
    store = open_store(settings)
    try:
        (payloads,) = check_store(store).values()
    finally:
        store.close()
    return [{k: v for k, v in p.items() if k != "ingested_at"} for p in payloads]


def test_pipeline_stores_the_same_chunks_and_recuts_only_the_edited_page(
        tmp_path: Path, make_settings: Any, embedder: Any, counting_stream: list[str]) -> None:
    book = F.write_pdf(tmp_path / "docs" / "book.pdf", PAGES)
    cached = make_settings(tmp_path / "cached")
    off = make_settings(tmp_path / "off", chunking={"size": 64, "overlap": 8, "cache_mb": 0})
    ingest(off, [book], embedder=embedder)
    cut = len(counting_stream)
    ingest(cached, [book], embedder=embedder)
    assert len(counting_stream) == 2 * cut == 2 * len(PAGES)  # one call per page, none kept yet
    assert chunks_path(cached).exists() and not chunks_path(off).exists()
    assert stored_chunks(cached) == stored_chunks(off)

    edited = [list(lines) for lines in PAGES]
    edited[3][2] = "Page 4, line 2: the new ferry pier opened in 1932, and the mayor cut the rope."
    F.write_pdf(book, edited)
    ingest(off, [book], embedder=embedder)
    counting_stream.clear()
    report = ingest(cached, [book], embedder=embedder)
    assert report.count("updated") == 1
    assert len(counting_stream) == 1 and "new ferry pier" in counting_stream[0]
    assert stored_chunks(cached) == stored_chunks(off)
