"""Keyword (BM25) sparse vectors, made by Qdrant's own BM25 embedder so both stores get the
same vectors; the collection applies the IDF modifier at search time."""

from __future__ import annotations

from ingest.store.base import Sparse


class SparseEncoder:
    def __init__(self) -> None:
        import qdrant_edge

        self._bm25 = qdrant_edge.Bm25()

    def document(self, text: str) -> Sparse:
        v = self._bm25.embed_document(text)
        return Sparse(list(v.indices), list(v.values))

    def query(self, text: str) -> Sparse:
        v = self._bm25.embed_query(text)
        return Sparse(list(v.indices), list(v.values))
