"""Opens what a command needs (store, embedder, tokenizer) once and closes it after."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from core.settings import Settings
from ingest.payload import count_documents
from ingest.store import Store, open_store


def sample_dir() -> Path:
    return Path(__file__).parent / "sample"


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: Store = open_store(settings)
        self._embedder: Any = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def embedder(self) -> Any:
        if self._embedder is None:
            from ingest.embedder import Embedder

            self._embedder = Embedder(self.settings.embedding)
        return self._embedder

    def document_count(self) -> int:
        return count_documents(self.store)

    def retriever(self) -> Any:
        from ingest.tokenizer import load_tokenizer
        from retrieval.service import Retriever

        return Retriever(self.settings, self.store, self.embedder(),
                         load_tokenizer(self.settings.tokenizer.path))
