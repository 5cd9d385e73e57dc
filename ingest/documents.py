"""Listing and deleting stored documents (shared by the CLI and the API).

None of them reads every document's payload: a page is read by cursor (the store's own
scroll offset, a point id), a document is found by its id with a filter, and only an id
prefix reads the ids (and nothing else) of every document."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import NotFoundError, SettingsError
from ingest.payload import MANIFEST_FIELDS, ChunkPayload, count_documents, first_chunks, manifest
from ingest.store import Store, Where

MAX_PAGE = 1000


@dataclass(frozen=True)
class DocumentInfo:
    document_id: str
    source: str
    title: str
    type: str
    pages: int | None
    chunks: int
    tokens: int
    ingested_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, p: ChunkPayload) -> DocumentInfo:
        return cls(document_id=p.document_id, source=p.source, title=p.title, type=p.type,
                   pages=p.pages, chunks=int(p.doc_chunks), tokens=int(p.doc_tokens),
                   ingested_at=p.ingested_at)


@dataclass(frozen=True)
class DocumentPage:
    """One page of the listing, in store order; `next_cursor` asks for the next (None after
    the last); `total` is every live document."""

    documents: list[DocumentInfo]
    next_cursor: str | None
    total: int


def list_documents(store: Store) -> list[DocumentInfo]:
    """Every document, by path: reads every manifest entry (not the chunks' text)."""
    docs = [DocumentInfo.of(p) for p in manifest(store)]
    return sorted(docs, key=lambda d: (d.source, d.document_id))


def document_page(store: Store, limit: int, cursor: str | None = None) -> DocumentPage:
    """Up to `limit` documents from `cursor` (a previous page's `next_cursor`)."""
    if not 1 <= limit <= MAX_PAGE:
        raise SettingsError("limit", f"must be between 1 and {MAX_PAGE}, got {limit}")
    if cursor is not None:
        _check_cursor(cursor)
    points, after = store.page(first_chunks(), limit, cursor, MANIFEST_FIELDS)
    docs = [DocumentInfo.of(ChunkPayload.from_payload(p.payload)) for p in points]
    return DocumentPage(docs, after, count_documents(store))


def iter_documents(store: Store, batch: int = MAX_PAGE) -> Iterator[DocumentInfo]:
    """Every document, page by page, in store order."""
    cursor = None
    while True:
        page = document_page(store, batch, cursor)
        yield from page.documents
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _check_cursor(cursor: str) -> None:
    try:
        uuid.UUID(cursor)
    except ValueError:
        raise SettingsError("cursor", f"'{cursor[:40]}' is not a cursor a page of this listing "
                                      "gave (next_cursor)") from None


def find_document(store: Store, document_id: str) -> DocumentInfo | None:
    """The live document with this id, by filter."""
    found = next(manifest(store, Where(equals={"document_id": document_id})), None)
    return None if found is None else DocumentInfo.of(found)


def resolve_document(store: Store, id_or_path: str) -> DocumentInfo:
    """A document by id, by path (as ingested), or by unique id prefix."""
    doc = find_document(store, id_or_path)
    if doc is not None:
        return doc
    # Here, not at the top: the query path (app.runtime) would import the whole pipeline.
    from ingest.pipeline import document_id_for

    doc = find_document(store, document_id_for(Path(id_or_path)))
    if doc is not None:
        return doc
    if len(id_or_path) >= 4:
        prefixed = {p.payload.get("document_id") for p in
                    store.scroll(first_chunks(), fields=("document_id",))
                    if str(p.payload.get("document_id", "")).startswith(id_or_path)}
        if len(prefixed) == 1:
            doc = find_document(store, str(prefixed.pop()))
            if doc is not None:
                return doc
    raise NotFoundError(f"no stored document with id or path '{id_or_path}'")


def delete_document(store: Store, id_or_path: str) -> DocumentInfo:
    """Deletes the document and the documents it carries (attachments, messages)."""
    doc = resolve_document(store, id_or_path)
    store.delete(Where(equals={"document_id": doc.document_id}))
    store.delete(Where(equals={"parent": doc.document_id}))
    return doc
