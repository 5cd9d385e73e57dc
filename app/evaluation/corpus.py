"""The corpus an evaluation reads: stored documents rebuilt from their chunks, the corpus and
settings fingerprints, and the temporary collection probe copies are ingested into.

The user's collection is only read. The temporary collection is removed when the evaluation
ends, fails or is interrupted (Ctrl-C); one left behind by a killed process is removed by the
next evaluation (its store lock is free, so its owner is gone).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from core.errors import RagError
from core.settings import Settings
from ingest.payload import ChunkPayload, count_documents
from ingest.store import LIVE, Store, Where, open_store

TEMP_PREFIX = "eval-tmp-"


class EmptyCollectionError(RagError):
    """The collection to evaluate does not exist or holds no document: there is nothing to
    make probes from."""


def check_corpus(store: Store, collection: str) -> None:
    """Raises EmptyCollectionError, naming `collection`, unless it holds a live document."""
    if not store.exists():
        raise EmptyCollectionError(f"collection '{collection}' does not exist: ingest "
                                   "documents into it first, then evaluate it")
    if count_documents(store) == 0:
        raise EmptyCollectionError(f"collection '{collection}' is empty: ingest documents "
                                   "into it first, then evaluate it")


@dataclass(frozen=True)
class StoredDocument:
    """One live document: its manifest entry and its chunks in order."""

    entry: ChunkPayload
    chunks: tuple[ChunkPayload, ...]

    @property
    def text(self) -> str:
        """The document's text as ingested: each section's cores tile it, sections are
        joined by a blank line (ingest/chunker.py)."""
        sections: dict[int, list[str]] = {}
        for c in self.chunks:
            sections.setdefault(c.section, []).append(c.core)
        return "\n\n".join("".join(cores) for _, cores in sorted(sections.items()))


def read_document(store: Store, entry: ChunkPayload) -> StoredDocument:
    where = Where(equals={"state": LIVE, "document_id": entry.document_id})
    chunks = [ChunkPayload.from_payload(p.payload) for p in store.scroll(where)]
    live = [c for c in chunks if c.doc_hash == entry.doc_hash]
    return StoredDocument(entry, tuple(sorted(live, key=lambda c: c.chunk_index)))


def corpus_fingerprint(entries: list[ChunkPayload]) -> dict[str, Any]:
    """The hash of every live document's version, and the versions themselves (for a
    comparison to say which documents changed)."""
    docs = {e.document_id: {"hash": e.doc_hash, "source": e.source} for e in entries}
    digest = hashlib.sha256("\n".join(f"{k}:{v['hash']}" for k, v in sorted(docs.items()))
                            .encode()).hexdigest()[:16]
    return {"hash": digest, "documents": docs,
            "tokens": sum(int(e.doc_tokens) for e in entries)}


def retrieval_settings(settings: Settings) -> dict[str, Any]:
    """The settings that change what retrieval packs: chunking, embedder, tokenizer, search
    and packing."""
    e = settings.embedding
    return {
        "collection": settings.store.collection,
        "chunking": settings.chunking.model_dump(mode="json"),
        "embedding": {"model": e.model, "backend": e.backend, "onnx_int8": e.onnx_int8,
                      "long_text": e.long_text},
        "tokenizer": settings.tokenizer.path,
        "retrieval": settings.retrieval.model_dump(mode="json"),
    }


def settings_fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


class TempCollection:
    """A fresh collection beside the user's (same store kind), removed on exit."""

    def __init__(self, settings: Settings):
        name = f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}"
        store = settings.store.model_copy(update={"collection": name})
        self.settings = settings.model_copy(update={"store": store})
        self.store: Store | None = None

    @property
    def name(self) -> str:
        return self.settings.store.collection

    def __enter__(self) -> TempCollection:
        self.store = open_store(self.settings)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    def remove(self) -> None:
        store, self.store = self.store, None
        if store is None:
            return
        if store.kind == "server":
            try:
                client: Any = getattr(store, "client")  # noqa: B009 - the server store's client
                client.delete_collection(getattr(store, "collection"))  # noqa: B009
            finally:
                store.close()
            return
        store.close()
        remove_edge_collection(self.settings.store_path)


def remove_edge_collection(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    (path.parent / f".{path.name}.lock").unlink(missing_ok=True)


def sweep_stale(settings: Settings) -> list[str]:
    """Removes embedded temporary collections whose process is gone (their lock is free);
    returns their names."""
    if settings.store.url:
        return []
    removed = []
    for path in sorted((settings.data_dir / "qdrant").glob(f"{TEMP_PREFIX}*")):
        lock = path.parent / f".{path.name}.lock"
        if lock.exists() and not _lock_free(lock):
            continue
        remove_edge_collection(path)
        removed.append(path.name)
    return removed


def temp_collections(settings: Settings) -> list[str]:
    """The embedded temporary collections present now (none once every evaluation ended)."""
    return sorted(p.name for p in (settings.data_dir / "qdrant").glob(f"{TEMP_PREFIX}*"))


def _lock_free(lock: Path) -> bool:
    with lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True
