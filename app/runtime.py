"""Opens what a command needs (store, embedder, tokenizer) once and closes it after, and
owns the policy for sharing them between threads: one lock serialises store access (and
the embedder, whose tokenizer is not reentrant); LLM calls run outside it.

Readers (a question's retrieval) hold the lock throughout; ingest jobs write through
`locked_store()`, one store call at a time, so questions keep being answered while a large
upload is embedded, and each retrieval sees the store between two ingest writes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from core.settings import Settings
from ingest.documents import DocumentInfo, delete_document, list_documents
from ingest.payload import count_documents
from ingest.store import LIVE, Store, open_store


def sample_dir() -> Path:
    return Path(__file__).parent / "sample"


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: Store = open_store(settings)
        self.lock = threading.RLock()  # store and embedder access, see the module docstring
        self._embedder: Any = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            self.store.close()

    def embedder(self) -> Any:
        if self._embedder is None:
            from ingest.embedder import Embedder

            self._embedder = Embedder(self.settings.embedding)
        return self._embedder

    def warm_embedder(self) -> None:
        """Loads the embedder outside the lock (seconds of torch import and weights), so
        listing documents or readiness do not wait for it."""
        if self._embedder is not None:
            return
        from ingest.embedder import Embedder

        embedder = Embedder(self.settings.embedding)
        with self.lock:
            if self._embedder is None:
                self._embedder = embedder

    # -- under the lock -------------------------------------------------------------------
    def document_count(self) -> int:
        with self.lock:
            return count_documents(self.store)

    def documents(self) -> list[DocumentInfo]:
        with self.lock:
            return list_documents(self.store)

    def delete_document(self, id_or_path: str) -> DocumentInfo:
        with self.lock:
            return delete_document(self.store, id_or_path)

    def locked_store(self) -> LockedStore:
        """The store for a background writer (an ingest job): each call under the lock."""
        return LockedStore(self.store, self.lock)

    def locked_embedder(self) -> LockedEmbedder:
        """The shared embedder (loaded now, under the lock) for a background writer."""
        with self.lock:
            embedder = self.embedder()
        return LockedEmbedder(embedder, self.lock)

    def retriever(self) -> Any:
        from ingest.tokenizer import load_tokenizer
        from retrieval.service import Retriever

        return Retriever(self.settings, self.store, self.embedder(),
                         load_tokenizer(self.settings.tokenizer.path))


class LockedStore:
    """The store with each call under `lock` (scrolls are read whole inside it).

    The pipeline commits a document with two calls, set_payload(state=live) then the delete
    of its previous version; the lock is held from the first to the end of the second, so a
    reader never sees two versions of one document live."""

    _CALLS = {"ensure_collection", "exists", "upsert", "set_payload", "delete", "query",
              "retrieve", "scroll", "count", "optimize"}

    def __init__(self, store: Any, lock: threading.RLock):
        self._store = store
        self._lock = lock
        self._held = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self._CALLS:
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                result = attr(*args, **kwargs)
                return list(result) if name == "scroll" else result

        return locked

    def set_payload(self, where: Any, payload: dict[str, Any]) -> None:
        self._lock.acquire()
        try:
            self._store.set_payload(where, payload)
        except BaseException:
            self._lock.release()
            raise
        if payload.get("state") == LIVE:
            self._held += 1  # released by the delete of the old version, which follows
        else:
            self._lock.release()

    def delete(self, where: Any) -> None:
        try:
            with self._lock:
                self._store.delete(where)
        finally:
            self.release_held()

    def release_held(self) -> None:
        while self._held:
            self._held -= 1
            self._lock.release()


class LockedEmbedder:
    """The shared embedder with each batch under `lock`: retrieval embeds questions under the
    same lock, and one model must not run two batches at once (its tokenizer is not
    reentrant)."""

    def __init__(self, embedder: Any, lock: threading.RLock):
        self._embedder = embedder
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def embed(self, texts: list[str]) -> Any:
        with self._lock:
            return self._embedder.embed(texts)
