"""The manifest kept in memory on a real Edge store: after each kind of write it equals a
fresh full read, and it reads everything again only when a write names no document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import DIM, store_documents

from ingest.manifest import Manifest, order
from ingest.payload import manifest
from ingest.store import LIVE, STAGED, Where
from ingest.store.edge import EdgeStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    s = EdgeStore(tmp_path / "docs")
    s.ensure_collection(DIM)
    yield s
    s.close()


def fresh(store: EdgeStore) -> list[tuple[str, str, int]]:
    return [(e.source, e.document_id, e.doc_chunks)
            for e in sorted(manifest(store), key=order)]


def kept(m: Manifest) -> list[tuple[str, str, int]]:
    return [(e.source, e.document_id, e.doc_chunks) for e in m.entries()]


def test_writes_are_read_back_document_by_document(store: EdgeStore) -> None:
    first = store_documents(store, [f"doc{n}" for n in range(40)])
    m = Manifest(store)
    before = m.entries()
    assert kept(m) == fresh(store) and m.full_reads == 1

    added = store_documents(store, ["zeta", "aardvark"], chunks=3)  # new, live
    store_documents(store, ["pending"], state=STAGED)  # staged: invisible
    store.delete(Where(equals={"document_id": first[5]}))  # removed
    store.set_payload(Where(equals={"document_id": first[7]}), {"doc_chunks": 9})  # changed
    store.delete(Where(equals={"state": STAGED}))  # only staged points: nothing to re-read
    assert kept(m) == fresh(store) and m.full_reads == 1
    ids = {e[1] for e in kept(m)}
    assert set(added) <= ids and first[5] not in ids
    assert dict((e[1], e[2]) for e in kept(m))[first[7]] == 9
    assert len(before) == 40  # a list handed out earlier is not changed under its holder


def test_carried_documents_go_with_their_parent(store: EdgeStore) -> None:
    [top] = store_documents(store, ["mailbox"])
    store_documents(store, ["attachment-a", "attachment-b"], parent=top)
    m = Manifest(store)
    assert len(m.entries()) == 3
    store.delete(Where(equals={"parent": top}))
    store.delete(Where(equals={"document_id": top}))
    assert m.entries() == [] and m.full_reads == 1


def test_a_write_that_names_no_document_reads_everything_again(store: EdgeStore) -> None:
    store_documents(store, ["a", "b"])
    m = Manifest(store)
    m.entries()
    store.set_payload(Where(equals={"state": LIVE}), {"title": "renamed"})
    assert {e.title for e in m.entries()} == {"renamed"} and m.full_reads == 2


def test_a_manifest_older_than_its_age_is_read_again(store: EdgeStore) -> None:
    store_documents(store, ["a"])
    m = Manifest(store, max_age_s=0.0)
    m.entries()
    m.entries()
    assert m.full_reads == 2
