"""The embedding cache with the real MiniLM ONNX embedder: what a re-ingest embeds again
(counted on the texts the real model receives), its bound, and a run killed mid-write."""

from __future__ import annotations

import io
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_helpers import ROOT, check_store, live_points

from core.settings import Settings
from ingest.embed_cache import CachedEmbedder, cache_path
from ingest.pipeline import ingest

PARAGRAPHS = [
    f"Paragraph {i} is about the {topic} of the old harbour town, where the {topic} "
    f"was recorded by the keepers of the lighthouse in their log for year {1900 + i}. "
    f"Nobody else wrote down the {topic} in such detail, so the log is the only source."
    for i, topic in enumerate(["tides", "storms", "fishing fleet", "market", "ferries",
                               "school", "bakery", "church bells", "winters", "festivals"])
]


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> Any:
        self.texts.extend(texts)
        return self.inner.embed(texts)


@pytest.fixture
def counting(embedder: Any) -> CountingEmbedder:
    return CountingEmbedder(embedder)


def write_doc(path: Path, paragraphs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(paragraphs) + "\n")
    return path


def chunk_texts(store: Any) -> set[str]:
    return {p.payload["text"] for p in live_points(store)}


def test_edited_paragraph_reembeds_only_changed_chunks(tmp_path: Path, settings: Settings,
                                                       store: Any,
                                                       counting: CountingEmbedder) -> None:
    doc = write_doc(tmp_path / "docs" / "harbour.txt", PARAGRAPHS)
    first = ingest(settings, [doc], store=store, embedder=counting)
    assert first.cached == 0 and first.embedded == first.chunks == len(counting.texts) > 4
    before = chunk_texts(store)

    edited = list(PARAGRAPHS)
    edited[5] = "Paragraph 5 now tells of the new ferry pier, opened in 1932 by the mayor."
    write_doc(doc, edited)
    counting.texts.clear()
    report = ingest(settings, [doc], store=store, embedder=counting)
    changed = chunk_texts(store) - before
    assert 0 < len(changed) < report.chunks
    assert sorted(counting.texts) == sorted(changed)
    assert report.embedded == len(changed) and report.cached == report.chunks - len(changed)
    check_store(store)


def test_copy_and_new_collection_embed_nothing(tmp_path: Path, settings: Settings,
                                               make_settings: Any,
                                               counting: CountingEmbedder) -> None:
    doc = write_doc(tmp_path / "docs" / "harbour.txt", PARAGRAPHS)
    first = ingest(settings, [doc], embedder=counting)
    counting.texts.clear()

    copy = tmp_path / "docs" / "harbour-copy.txt"
    copy.write_bytes(doc.read_bytes())
    report = ingest(settings, [copy], embedder=counting)
    assert report.count("new") == 1 and counting.texts == []
    assert report.embedded == 0 and report.cached == first.chunks

    other = make_settings(settings.data_dir, store={"collection": "second"})
    report = ingest(other, [doc, copy], embedder=counting)
    assert report.count("new") == 2 and counting.texts == []
    assert report.embedded == 0 and report.cached == first.chunks  # one text, once per run


def test_cached_vectors_are_the_embedders_own(tmp_path: Path, embedder: Any) -> None:
    texts = PARAGRAPHS[:4]
    fresh = embedder.embed(texts)
    first = CachedEmbedder(embedder, tmp_path / "v.sqlite", 1)
    first.embed(texts[:2])
    first.close()
    again = CachedEmbedder(embedder, tmp_path / "v.sqlite", 1)  # a restart
    got = again.embed(texts)
    assert (again.hits, again.misses) == (2, 2)
    assert np.array_equal(got, fresh)
    truncating = CachedEmbedder(embedder, tmp_path / "v.sqlite", 1, long_text="truncate")
    truncating.embed(texts[:1])
    assert truncating.hits == 0  # another signature: another key


def test_bound_drops_least_recently_used(tmp_path: Path, embedder: Any) -> None:
    cache = CachedEmbedder(embedder, tmp_path / "v.sqlite", max_mb=0.02)
    assert 5 < cache.capacity < 20
    keep = "A sentence that is used again and again."
    texts = [f"Sentence number {i} about lighthouse keeper {i}." for i in range(40)]
    for start in range(0, len(texts), 4):
        cache.embed([keep, *texts[start:start + 4]])
        assert cache.entries() <= cache.capacity
    hits = cache.hits
    cache.embed([keep])
    assert cache.hits == hits + 1
    cache.embed(texts[:1])
    assert cache.hits == hits + 1  # the oldest went first


def test_cache_off_embeds_everything(tmp_path: Path, counting: CountingEmbedder) -> None:
    cache = CachedEmbedder(counting, tmp_path / "v.sqlite", max_mb=0)
    cache.embed(PARAGRAPHS[:2])
    cache.embed(PARAGRAPHS[:2])
    assert len(counting.texts) == 4 and cache.hits == 0
    assert not (tmp_path / "v.sqlite").exists()


_WRITER = """
import sys
from core.settings import load_settings
from ingest.embed_cache import cached
from ingest.embedder import Embedder
settings = load_settings(data_dir=sys.argv[1])
cache = cached(Embedder(settings.embedding), settings)
n = 0
while True:
    cache.embed([f"Crash test text {n + i}: the keeper logged storm {n + i}." for i in range(8)])
    n += 8
    print(n, flush=True)
"""


@pytest.mark.slow
def test_killed_writer_leaves_no_wrong_vector(tmp_path: Path, settings: Settings,
                                              embedder: Any) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(settings.data_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for _ in range(3):  # three calls committed, the kill lands in a later one
            assert proc.stdout.readline()
        time.sleep(0.15)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    path = cache_path(settings)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    cache = CachedEmbedder(embedder, path, settings.embedding.cache_mb)
    stored = cache.entries()
    assert stored >= 24 and stored % 8 == 0  # whole calls only
    texts = [f"Crash test text {i}: the keeper logged storm {i}." for i in range(stored)]
    got = cache.embed(texts)
    assert cache.hits == stored  # each stored under its own text's key
    assert np.allclose(got, embedder.embed(texts), atol=1e-6)


def test_ingest_summary_counts_the_cache(tmp_path: Path, settings: Settings,
                                         embedder: Any) -> None:
    from rich.console import Console

    from app.console import print_ingest_report

    doc = write_doc(tmp_path / "docs" / "harbour.txt", PARAGRAPHS)
    ingest(settings, [doc], embedder=embedder)
    copy = tmp_path / "docs" / "copy.txt"
    copy.write_bytes(doc.read_bytes())
    report = ingest(settings, [copy], embedder=embedder)
    out = io.StringIO()
    print_ingest_report(Console(file=out, width=200), Console(file=io.StringIO()), report)
    assert out.getvalue().splitlines()[-1] == (
        f"Embedded 0 chunks; {report.chunks} came from the embedding cache.")
