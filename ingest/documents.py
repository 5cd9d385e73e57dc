"""Listing and deleting stored documents (shared by the CLI and the API)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import NotFoundError
from ingest.payload import manifest
from ingest.store import Store, Where


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


def list_documents(store: Store) -> list[DocumentInfo]:
    docs = [
        DocumentInfo(
            document_id=p.document_id, source=p.source, title=p.title, type=p.type,
            pages=p.pages, chunks=int(p.doc_chunks), tokens=int(p.doc_tokens),
            ingested_at=p.ingested_at,
        )
        for p in manifest(store)
    ]
    return sorted(docs, key=lambda d: (d.source, d.document_id))


def resolve_document(store: Store, id_or_path: str) -> DocumentInfo:
    """A document by id, by path (as ingested), or by unique id prefix."""
    docs = list_documents(store)
    by_id = {d.document_id: d for d in docs}
    if id_or_path in by_id:
        return by_id[id_or_path]
    # Here, not at the top: the query path (app.runtime) would import the whole pipeline.
    from ingest.pipeline import document_id_for

    path_id = document_id_for(Path(id_or_path))
    if path_id in by_id:
        return by_id[path_id]
    prefixed = [d for d in docs if len(id_or_path) >= 4 and d.document_id.startswith(id_or_path)]
    if len(prefixed) == 1:
        return prefixed[0]
    raise NotFoundError(f"no stored document with id or path '{id_or_path}'")


def delete_document(store: Store, id_or_path: str) -> DocumentInfo:
    """Deletes the document and the documents it carries (attachments, messages)."""
    doc = resolve_document(store, id_or_path)
    store.delete(Where(equals={"document_id": doc.document_id}))
    store.delete(Where(equals={"parent": doc.document_id}))
    return doc
