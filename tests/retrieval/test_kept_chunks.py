"""The chunks a retriever keeps between questions (retrieval/kept_chunks.py): a kept chunk
packs exactly what a fresh read packs, and any write to the embedded store drops them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.choices import ContextMode
from core.settings import load_settings
from ingest.documents import delete_document
from ingest.pipeline import ingest
from ingest.store import STAGED, Where, open_store
from retrieval.service import RetrieveOptions, Retriever

BIG = RetrieveOptions(budget_tokens=4_000, context_mode=ContextMode.RETRIEVE)
SMALL = RetrieveOptions(budget_tokens=2_000, context_mode=ContextMode.RETRIEVE)
QUESTION = "Where are the lighthouse keeper's spare batteries kept?"


def test_kept_chunks_pack_the_same_context_counted_exactly(library, counter):
    retriever = library.retriever()
    first = retriever.retrieve(QUESTION, BIG)
    read = retriever.chunks.fetched
    again = retriever.retrieve(QUESTION, BIG)
    assert read > 0 and retriever.chunks.fetched == read  # every chunk came from the cache
    fresh = library.retriever().retrieve(QUESTION, BIG)
    assert again.packing.context == first.packing.context == fresh.packing.context
    assert again.packing.used_tokens == fresh.packing.used_tokens
    assert counter.count(again.packing.context) == again.packing.used_tokens
    assert again.packing.used_tokens <= again.budget.available


def _ingest(settings: Any, store: Any, files: list[Path], embedder: Any) -> None:
    report = ingest(settings, files, store=store, embedder=embedder)
    assert not report.failed, report.failed


def test_writes_drop_kept_chunks(tmp_path, embedder, counter):
    docs = tmp_path / "docs"
    docs.mkdir()
    notes = docs / "notes.txt"
    notes.write_text("The lighthouse keeper keeps the spare batteries in the blue cabinet.\n\n"
                     "The harbour master logs every ship that enters after dusk.\n")
    other = docs / "bakery.txt"
    other.write_text("The bakery bakes rye bread every morning at five.\n")
    settings = load_settings(data_dir=tmp_path / "data", chunking={"size": 64, "overlap": 8})
    store = open_store(settings)
    try:
        _ingest(settings, store, [notes, other], embedder)
        retriever = Retriever(settings, store, embedder, counter)
        assert "blue cabinet" in retriever.retrieve(QUESTION, SMALL).packing.context

        # An edit re-ingested: the old version's points are replaced (upsert, delete).
        notes.write_text("The lighthouse keeper keeps the spare batteries in the red locker.\n")
        _ingest(settings, store, [notes, other], embedder)
        read = retriever.chunks.fetched
        edited = retriever.retrieve(QUESTION, SMALL).packing.context
        assert "red locker" in edited and "blue cabinet" not in edited
        assert retriever.chunks.fetched > read  # read again, not served from the cache
        assert counter.count(edited) == retriever.retrieve(QUESTION, SMALL).packing.used_tokens

        # A payload change: staged chunks are no longer live, so not packed.
        store.set_payload(Where(equals={"document_id": _id(store, notes)}), {"state": STAGED})
        assert "red locker" not in retriever.retrieve(QUESTION, SMALL).packing.context

        delete_document(store, str(other))
        after = retriever.retrieve("When does the bakery bake rye bread?", SMALL)
        assert "rye bread" not in after.packing.context
    finally:
        store.close()


def _id(store: Any, path: Path) -> str:
    (point,) = store.scroll(Where(equals={"source": str(path.resolve()), "chunk_index": 0}))
    return str(point.payload["document_id"])


def test_chunk_ref_from_a_stored_dict_reads_as_through_chunk_payload(library):
    """The direct reading takes ChunkPayload's defaults for the keys an older point lacks."""
    from ingest.payload import ChunkPayload
    from retrieval.packer import ChunkRef

    (point, *_) = library.store.scroll(Where(equals={"chunk_index": 1}))
    stored = point.payload
    old = {"document_id": "d1", "chunk_index": 3, "text": "overlap. Core text."}
    for payload in (stored, old, {**stored, "table_header": 4, "ocr": True, "page_label": "Q3"}):
        assert ChunkRef.from_payload("p", payload) == ChunkRef.from_chunk(
            "p", ChunkPayload.from_payload(payload))
