"""Fixtures for the retrieval tests: real tokenizer, real MiniLM embedder, real Qdrant Edge
stores filled by the real ingest pipeline from synthetic text written here.

Three corpora, each built once per session:

* `library`: five topic documents (markdown, text, html, two in a sub-folder), topic
  paragraphs between filler paragraphs, chunked small (64 tokens) so a few thousand tokens
  give many chunks; whole-document, filter, layout and small-budget tests use it.
* `haystack`: ~142k tokens of varied filler sentences in twelve documents, default chunking
  (512/64), with five needle sentences at depths 0, 25, 50, 75 and 100 %; big budgets and
  needle tests use it.
* `twins`: a handbook, the same file copied under a second name, and one other document.
* `copies`: one long handbook saved under eight names.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from retrieval_helpers import LIBRARY_FILES, NEEDLES, filler_sentences, library_text, paragraphs

from core.settings import Settings, load_settings
from ingest.loaders import load
from ingest.tokenizer import TokenCounter

# -- corpora ----------------------------------------------------------------------------------

@dataclass
class Corpus:
    root: Path
    settings: Settings
    store: Any
    files: list[Path]
    counter: TokenCounter
    embedder: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def settings_with(self, **retrieval: Any) -> Settings:
        return load_settings(data_dir=self.settings.data_dir,
                             chunking=self.settings.chunking.model_dump(),
                             retrieval={**self.settings.retrieval.model_dump(), **retrieval})

    def retriever(self, **retrieval: Any) -> Any:
        from retrieval.service import Retriever

        s = self.settings_with(**retrieval) if retrieval else self.settings
        return Retriever(s, self.store, self.embedder, self.counter)

    def document_id(self, path: Path) -> str:
        from ingest.pipeline import document_id_for

        return document_id_for(path)

    def text_of(self, path: Path) -> str:
        """The document text as the loader gives it (what whole-document mode must carry)."""
        sections = load(path, path.read_bytes()).sections
        assert len(sections) == 1
        return sections[0].text


def _build(tmp: Path, settings: Settings, files: list[Path], embedder: Any,
           counter: TokenCounter) -> Iterator[Corpus]:
    from ingest.pipeline import ingest
    from ingest.store import open_store

    store = open_store(settings)
    try:
        report = ingest(settings, files, store=store, embedder=embedder)
        assert not report.failed, report.failed
        assert report.count("new") == len(files)
        yield Corpus(tmp, settings, store, files, counter, embedder)
    finally:
        store.close()


@pytest.fixture(scope="session")
def library_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("library")
    rng = random.Random(7)
    seen: set[str] = set()
    files = []
    for name, topic in LIBRARY_FILES:
        path = root / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(library_text(name, topic, rng, seen))
        files.append(path)
    return files


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory, library_files: list[Path], embedder: Any,
            counter: TokenCounter) -> Iterator[Corpus]:
    tmp = tmp_path_factory.mktemp("library-data")
    settings = load_settings(data_dir=tmp, chunking={"size": 64, "overlap": 8})
    yield from _build(library_files[0].parent, settings, library_files, embedder, counter)


@pytest.fixture(scope="session")
def twins(tmp_path_factory: pytest.TempPathFactory, embedder: Any,
          counter: TokenCounter) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("twins")
    rng = random.Random(11)
    seen: set[str] = set()
    original = root / "docs" / "handbook.md"
    copy = root / "docs" / "handbook-copy.md"
    other = root / "docs" / "bakery.txt"
    original.parent.mkdir(parents=True)
    original.write_text(library_text("handbook.md", "lighthouse", rng, seen))
    copy.write_bytes(original.read_bytes())
    other.write_text(library_text("bakery.txt", "bread", rng, seen, n=20))
    settings = load_settings(data_dir=root / "data", chunking={"size": 64, "overlap": 8})
    for corpus in _build(root / "docs", settings, [original, copy, other], embedder, counter):
        corpus.extra.update(original=original, copy=copy, other=other)
        yield corpus


COPIES = 8


@pytest.fixture(scope="session")
def copies(tmp_path_factory: pytest.TempPathFactory, embedder: Any,
           counter: TokenCounter) -> Iterator[Corpus]:
    """One long lighthouse handbook saved under COPIES names: most hits are duplicates."""
    root = tmp_path_factory.mktemp("copies")
    text = library_text("handbook.txt", "lighthouse", random.Random(5), set(), n=200)
    files = []
    for i in range(COPIES):
        path = root / "docs" / f"handbook-{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files.append(path)
    settings = load_settings(data_dir=root / "data", chunking={"size": 64, "overlap": 8})
    yield from _build(root / "docs", settings, files, embedder, counter)


HAYSTACK_DOCS = 12
HAYSTACK_SENTENCES_PER_DOC = 700  # ~142k tokens: more than the largest budget, 131,072


@pytest.fixture(scope="session")
def haystack(tmp_path_factory: pytest.TempPathFactory, embedder: Any,
             counter: TokenCounter) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("haystack")
    rng = random.Random(2024)
    seen: set[str] = set()
    flat = filler_sentences(rng, HAYSTACK_DOCS * HAYSTACK_SENTENCES_PER_DOC, seen)
    # Needles in at their depth of the whole haystack (all documents read in order).
    for depth, sentence, *_ in sorted(NEEDLES, reverse=True):
        at = len(flat) if depth == 1.0 else round(depth * len(flat))
        flat.insert(at, sentence)
    per = len(flat) // HAYSTACK_DOCS
    files = []
    for i in range(HAYSTACK_DOCS):
        part = flat[i * per:] if i == HAYSTACK_DOCS - 1 else flat[i * per:(i + 1) * per]
        path = root / "docs" / f"volume-{i + 1:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(paragraphs(part) + "\n")
        files.append(path)
    settings = load_settings(data_dir=root / "data")
    for corpus in _build(root / "docs", settings, files, embedder, counter):
        corpus.extra["tokens"] = sum(counter.count(corpus.text_of(f)) for f in files)
        corpus.extra["sentences"] = flat
        yield corpus
