"""The chunk payload: what each stored point carries, written by ingest and read by
retrieval, the document list and the API. One schema, so a new key is one line here.

It lives in ingest/ (not core/) because it is ingest's output format and its manifest query
needs the store's filter type; everything that reads it sits above ingest.

A key added later is a field with a default: points stored before it read as the default,
so no re-ingest is needed to read an old store.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ingest.store.base import LIVE, STAGED, Store, Where

_POINT_NS = uuid.UUID("6f1c52a4-3c1e-4a8e-9a57-1d1f0f1c5e11")
_POINT_NS_BYTES = _POINT_NS.bytes
_VARIANT = "89ab"  # the first hex digit of the clock sequence: 10xx in binary


def point_id(document_id: str, version: str, index: int) -> str:
    """The point id of chunk `index` of `document_id` at `version` (its doc_hash): derived,
    so a rerun rewrites the same ids and retrieval finds a chunk's neighbours without a
    query. It is `str(uuid.uuid5(...))` spelled from the SHA-1 digest (version 5, RFC 4122
    variant), without the two UUID objects: 5 against 22 µs, and a question at 128k tokens
    derives ~240 neighbour ids."""
    h = hashlib.sha1(_POINT_NS_BYTES + f"{document_id}:{version}:{index}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True, kw_only=True)
class ChunkPayload:
    """One chunk and, repeated on each chunk, its document's fields (chunk 0's copy is the
    document's manifest entry)."""

    document_id: str
    source: str = ""
    title: str = ""
    type: str = ""
    pages: int | None = None
    page: int | None = None
    section: int = 0
    chunk_index: int
    text: str = ""
    core_offset: int = 0  # text[core_offset:] is the chunk's own text (before: overlap)
    char_start: int = 0
    char_end: int = 0
    tokens: int = 0
    core_tokens: int = 0
    end_tokens: int = 0  # core + passage separator, counted together
    tokenizer: str = ""  # the counter the token numbers are from
    embedding: str | None = None  # the backend and model that made the vector (onnx-int8/…)
    content_hash: str = ""
    doc_hash: str = ""  # the document's version: file bytes + what decides its chunks
    file_hash: str = ""
    doc_chunks: int = 0
    doc_tokens: int = 0
    size_bytes: int = 0
    mtime: float = 0.0
    ingested_at: str = ""
    state: str = STAGED
    page_label: str | None = None  # how citations name the page (`sheet Q3`), when not "page N"
    table_header: int = 0  # characters at the start of `text` repeating a table's header rows
    ocr: bool = False  # the page was read by OCR
    parent: str | None = None  # a carried document's (an e-mail attachment's) top file id

    @property
    def core(self) -> str:
        return self.text[self.core_offset:]

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        # Only carried documents have a parent: the key is indexed, and its absence is what
        # marks a top-level document.
        if payload["parent"] is None:
            del payload["parent"]
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChunkPayload:
        """The stored dict as a ChunkPayload; keys it does not know are ignored, missing ones
        (older points) take their defaults."""
        return cls(**{k: payload[k] for k in _NAMES if k in payload})

    def manifest_entry(self) -> ChunkPayload:
        """The document's fields only (a manifest need not hold chunk 0's text)."""
        return replace(self, text="")


_NAMES = tuple(f.name for f in fields(ChunkPayload))
# What a manifest entry reads of chunk 0: everything but its text (most of its bytes).
MANIFEST_FIELDS = tuple(n for n in _NAMES if n != "text")


def first_chunks() -> Where:
    """The first live chunk of each document: one point per document, its manifest entry."""
    return Where(equals={"chunk_index": 0, "state": LIVE})


def manifest(store: Store, where: Where | None = None) -> Iterator[ChunkPayload]:
    """Every live document's manifest entry (chunk 0, text left out), in store order; only
    those `where` also matches when given."""
    for point in store.scroll(first_chunks().and_(where or Where()), fields=MANIFEST_FIELDS):
        yield ChunkPayload.from_payload(point.payload)


def count_documents(store: Store) -> int:
    return store.count(first_chunks())
