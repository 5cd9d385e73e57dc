"""The chunk payload schema: what ingest writes is what every reader reads back, old points
without a newer key still read, and the manifest is the first live chunk of each document."""

from __future__ import annotations

import dataclasses
import random
import uuid
from pathlib import Path
from typing import Any

from ingest.payload import ChunkPayload, count_documents, first_chunks, manifest, point_id
from ingest.store import LIVE, Where
from retrieval.packer import ChunkRef


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_every_stored_key_is_a_field_and_reads_back_unchanged(tmp_path: Path, store: Any,
                                                             ingest_paths: Any) -> None:
    doc = _write(tmp_path, "a.md", "# Lighthouse\n\n" + "The keeper climbs the stairs. " * 60)
    ingest_paths([doc], store=store)
    points = list(store.scroll(Where(equals={"state": LIVE})))
    assert len(points) > 2
    # Written from the schema, in its order; only a carried document (an attachment) has a
    # parent.
    names = [f.name for f in dataclasses.fields(ChunkPayload) if f.name != "parent"]
    for p in points:
        assert list(p.payload) == names
        assert ChunkPayload.from_payload(p.payload).to_payload() == p.payload
        chunk = ChunkPayload.from_payload(p.payload)
        assert p.id == point_id(chunk.document_id, chunk.doc_hash, chunk.chunk_index)
        assert ChunkRef.from_payload(p.id, p.payload).core == chunk.core != ""


def test_an_older_point_reads_with_defaults_and_unknown_keys_are_ignored() -> None:
    old = {"document_id": "d1", "chunk_index": 3, "text": "overlap|core", "core_offset": 8,
           "a_key_from_the_future": [1, 2]}
    chunk = ChunkPayload.from_payload(old)
    assert (chunk.document_id, chunk.chunk_index, chunk.core) == ("d1", 3, "core")
    assert chunk.page is None and chunk.tokenizer == "" and chunk.section == 0
    assert "a_key_from_the_future" not in chunk.to_payload()


def test_point_ids_are_derived_and_differ_by_each_part() -> None:
    a = point_id("doc", "v1", 0)
    assert a == point_id("doc", "v1", 0)
    assert len({a, point_id("doc", "v1", 1), point_id("doc", "v2", 0),
                point_id("dod", "v1", 0)}) == 4


def test_the_manifest_is_one_text_free_entry_per_live_document(tmp_path: Path, store: Any,
                                                              ingest_paths: Any) -> None:
    paths = [_write(tmp_path, f"{n}.txt", f"Document {n} talks about {n}. " * 40)
             for n in ("alpha", "beta", "gamma")]
    ingest_paths(paths, store=store)
    entries = list(manifest(store))
    assert sorted(Path(e.source).name for e in entries) == ["alpha.txt", "beta.txt", "gamma.txt"]
    assert all(e.chunk_index == 0 and e.state == LIVE and e.text == "" for e in entries)
    assert all(e.doc_chunks > 1 and e.doc_tokens > 0 for e in entries)
    assert count_documents(store) == 3 == store.count(first_chunks())
    # A staged chunk 0 (an ingest in progress) is not a document yet.
    store.set_payload(Where(equals={"document_id": entries[0].document_id}), {"state": "staged"})
    assert count_documents(store) == 2


def test_point_ids_are_uuid5_of_the_chunk_position() -> None:
    """The ids stores hold: uuid5 in this namespace, spelled as `str(uuid.UUID)` does."""
    namespace = uuid.UUID("6f1c52a4-3c1e-4a8e-9a57-1d1f0f1c5e11")
    rng = random.Random(7)
    names = ["4c43eec9d5a74f47", "ä/ö docs:1", "", "x" * 300]
    for _ in range(3000):
        doc = rng.choice(names) + f"{rng.getrandbits(64):x}"
        version, index = f"{rng.getrandbits(128):032x}", rng.randrange(10**7)
        assert point_id(doc, version, index) == str(
            uuid.uuid5(namespace, f"{doc}:{version}:{index}"))
