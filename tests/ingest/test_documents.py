"""Listing, finding and deleting documents on a real Edge store: pages by cursor cover every
document once with the right total, lookups go by id, path or prefix, and a delete removes a
document with what it carries and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import DIM, store_documents

from core.errors import NotFoundError, SettingsError
from ingest.documents import (
    delete_document,
    document_page,
    find_document,
    iter_documents,
    list_documents,
    resolve_document,
)
from ingest.payload import count_documents
from ingest.store import STAGED, Where
from ingest.store.edge import EdgeStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    s = EdgeStore(tmp_path / "docs")
    s.ensure_collection(DIM)
    yield s
    s.close()


def test_pages_cover_every_document_once_with_the_total(store: EdgeStore) -> None:
    ids = store_documents(store, [f"doc{n}" for n in range(250)])
    store_documents(store, ["half-written"], state=STAGED)  # not committed: never listed
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        page = document_page(store, 100, cursor)
        assert page.total == 250 and len(page.documents) <= 100
        seen += [d.document_id for d in page.documents]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3 and sorted(seen) == sorted(ids)
    assert [d.document_id for d in iter_documents(store, batch=7)] == seen
    listed = list_documents(store)
    assert [d.source for d in listed] == sorted(d.source for d in listed)
    assert {d.document_id for d in listed} == set(ids) and listed[0].chunks == 2


def test_a_bad_page_request_names_its_field(store: EdgeStore) -> None:
    store_documents(store, ["a"])
    with pytest.raises(SettingsError) as bad:
        document_page(store, 10, "not-a-cursor")
    assert bad.value.field == "cursor"
    for limit in (0, 1001):
        with pytest.raises(SettingsError) as bad:
            document_page(store, limit)
        assert bad.value.field == "limit"
    assert document_page(store, 1).total == 1


def test_found_by_id_path_and_unique_prefix(store: EdgeStore) -> None:
    ids = store_documents(store, ["alpha", "beta"])
    assert find_document(store, ids[0]).title == "alpha"  # type: ignore[union-attr]
    assert find_document(store, "0000ffffffffffff") is None
    assert resolve_document(store, ids[1]).title == "beta"
    assert resolve_document(store, ids[1][:6]).document_id == ids[1]
    with pytest.raises(NotFoundError):
        resolve_document(store, "000")  # too short to be a prefix
    with pytest.raises(NotFoundError):
        resolve_document(store, "/docs/nowhere.txt")


def test_delete_removes_the_document_and_what_it_carries_only(store: EdgeStore) -> None:
    top, other = store_documents(store, ["mailbox", "report"], chunks=3)
    store_documents(store, ["attachment"], parent=top)
    assert count_documents(store) == 3
    gone = delete_document(store, top)
    assert gone.document_id == top and gone.chunks == 3
    assert [d.document_id for d in list_documents(store)] == [other]
    assert store.count(Where(equals={"document_id": other})) == 3
    with pytest.raises(NotFoundError):
        delete_document(store, top)
