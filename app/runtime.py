"""Opens what a command needs (store, embedder, tokenizer) once and closes it after, and
owns the policy for sharing them between threads.

The store is behind a readers-writer lock (app/rwlock.py): questions read it together,
ingest jobs and deletes write it alone. Measured before choosing it (tests/app/
test_runtime.py checks it stays so): Qdrant Edge answers queries, scrolls and counts from
several threads at once with the same results as one at a time, and the Llama tokenizer
counts from several threads at once. The embedder has a mutex of its own: the torch
backend's tokenizer is not reentrant ("Already borrowed"), and on these cores one model run
at a time is as fast as two; a question waits for at most one ingest batch.

Ingest jobs write through `locked_store()`, one store call at a time, so questions keep
being answered while a large upload is embedded, and each retrieval sees the store between
two ingest writes. The document listing is kept as of the store's last write, so listing
(and readiness) take no lock at all while nothing is written, and a write reads again only
the documents it touched (ingest/manifest.py).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from app.rwlock import ReadWriteLock
from core.settings import Settings
from ingest.documents import DocumentInfo, DocumentPage, delete_document, document_page
from ingest.manifest import Manifest
from ingest.payload import count_documents
from ingest.store import LIVE, Store, open_store


def sample_dir() -> Path:
    return Path(__file__).parent / "sample"


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: Store = open_store(settings)
        self.lock = ReadWriteLock()  # store access, see the module docstring
        self.embed_lock = threading.Lock()  # one embedding batch at a time
        self._load_lock = threading.Lock()
        self._embedder: Any = None
        self._listing: tuple[int, list[DocumentInfo]] | None = None
        # A server's listing is read every time: other processes write it.
        self._manifest = Manifest(self.store, None if self.store.kind == "edge" else 0.0)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self.lock.write():
            self.store.close()

    def embedder(self) -> Any:
        """The embedder, loaded on the first call (outside the store lock: seconds of model
        load must not hold up listing or readiness)."""
        if self._embedder is None:
            from ingest.embedder import Embedder

            with self._load_lock:
                if self._embedder is None:
                    self._embedder = Embedder(self.settings.embedding)
        return self._embedder

    def warm_embedder(self) -> None:
        """Loads the embedder for a process that answers many questions (the API, MCP)."""
        self.embedder().prepare_queries()

    def shared_embedder(self) -> LockedEmbedder:
        """The embedder with each batch under `embed_lock`, for every thread that embeds."""
        return LockedEmbedder(self.embedder(), self.embed_lock)

    # -- reads and writes -----------------------------------------------------------------
    def check_store(self) -> None:
        """Raises StoreError when the store does not answer (a Qdrant server that is down)."""
        with self.lock.read():
            self.store.exists()

    def document_count(self) -> int:
        if self.store.kind == "edge":
            return len(self.documents())
        with self.lock.read():
            return count_documents(self.store)

    def documents(self) -> list[DocumentInfo]:
        """Every stored document. The embedded store is written only by this process: its
        listing is kept until the next write and answered without the lock; a server's is
        read every time (other processes write it), beside other readers."""
        kept = self._listing
        if kept is not None and self.store.kind == "edge" and kept[0] == self.store.generation:
            return kept[1]
        with self.lock.read():
            generation = self.store.generation
            docs = [DocumentInfo.of(e) for e in self._manifest.entries()]
        self._listing = (generation, docs)
        return docs

    def document_page(self, limit: int, cursor: str | None = None) -> DocumentPage:
        with self.lock.read():
            return document_page(self.store, limit, cursor)

    def delete_document(self, id_or_path: str) -> DocumentInfo:
        with self.lock.write():
            return delete_document(self.store, id_or_path)

    def locked_store(self) -> LockedStore:
        """The store for a background writer (an ingest job): each call under the lock."""
        return LockedStore(self.store, self.lock)

    def locked_embedder(self) -> LockedEmbedder:
        """The shared embedder (loaded now) for a background writer."""
        return self.shared_embedder()

    def retriever(self) -> Any:
        """The retriever; the embedder loads in a thread meanwhile: reading the Llama 3
        tokenizer holds the GIL, building the ONNX session mostly does not."""
        from concurrent.futures import ThreadPoolExecutor

        from ingest.tokenizer import load_tokenizer
        from retrieval.service import Retriever

        with ThreadPoolExecutor(1, thread_name_prefix="embedder-load") as pool:
            embedder = pool.submit(self.embedder)
            tokenizer = load_tokenizer(self.settings.tokenizer.path)
            return Retriever(self.settings, self.store, embedder.result(), tokenizer)


class LockedStore:
    """The store with each call under `lock`: reads beside other readers, writes alone
    (scrolls are read whole inside it).

    The pipeline commits a document with two calls, set_payload(state=live) then the delete
    of its previous version; the write lock is held from the first to the end of the second,
    so a reader never sees two versions of one document live."""

    _READS = {"exists", "query", "retrieve", "scroll", "page", "count"}
    _WRITES = {"ensure_collection", "upsert", "optimize"}

    def __init__(self, store: Any, lock: ReadWriteLock):
        self._store = store
        self._lock = lock
        self._held = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self._READS and name not in self._WRITES:
            return attr
        hold = self._lock.read if name in self._READS else self._lock.write

        def locked(*args: Any, **kwargs: Any) -> Any:
            with hold():
                result = attr(*args, **kwargs)
                return list(result) if name == "scroll" else result

        return locked

    def set_payload(self, where: Any, payload: dict[str, Any]) -> None:
        self._lock.acquire_write()
        try:
            self._store.set_payload(where, payload)
        except BaseException:
            self._lock.release_write()
            raise
        if payload.get("state") == LIVE:
            self._held += 1  # released by the delete of the old version, which follows
        else:
            self._lock.release_write()

    def delete(self, where: Any) -> None:
        try:
            with self._lock.write():
                self._store.delete(where)
        finally:
            self.release_held()

    def release_held(self) -> None:
        while self._held:
            self._held -= 1
            self._lock.release_write()


class LockedEmbedder:
    """An embedder with each batch (a question's too) under `lock`: one model must not run
    two batches at once (the torch backend's tokenizer is not reentrant)."""

    def __init__(self, embedder: Any, lock: AbstractContextManager[Any]):
        self._embedder = embedder
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def embed(self, texts: list[str]) -> Any:
        with self._lock:
            return self._embedder.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        with self._lock:
            return self._embedder.embed_query(text)  # type: ignore[no-any-return]
