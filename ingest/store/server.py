"""A Qdrant server through qdrant-client (also its local mode, which stands in for a server
in congruence tests; it is far too slow to be the embedded store)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.choices import SearchMode
from core.errors import StoreError
from core.tracing import span
from ingest.store.base import (
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE,
    Changes,
    PointIn,
    PointOut,
    Sparse,
    Where,
)
from ingest.store.common import (
    best_scored,
    check_dimension,
    page_of,
    records,
    scored,
    scroll_pages,
    search_for,
    to_filter,
)


class _Conditions:
    """Payload conditions in qdrant_client's terms."""

    def __init__(self, m: Any):
        self.m = m

    def equals(self, key: str, value: str | int) -> Any:
        return self.m.FieldCondition(key=key, match=self.m.MatchValue(value=value))

    def any_of(self, key: str, values: list[str]) -> Any:
        return self.m.FieldCondition(key=key, match=self.m.MatchAny(any=values))

    def conjunction(self, must: list[Any] | None, must_not: list[Any] | None) -> Any:
        return self.m.Filter(must=must, must_not=must_not)


class ServerStore:
    kind = "server"
    generation = 0  # bumped on this client's writes; other writers are not seen

    def __init__(self, client: Any, collection: str, *, shard_number: int = 1,
                 replication_factor: int = 1, hnsw_m: int = 16, hnsw_ef_construct: int = 100,
                 where: str = "the Qdrant server"):
        from qdrant_client import models

        self.m = models
        self.conditions = _Conditions(models)
        self.client = client
        self.collection = collection
        self.where = where
        self.layout = dict(shard_number=shard_number, replication_factor=replication_factor)
        self.hnsw = models.HnswConfigDiff(m=hnsw_m, ef_construct=hnsw_ef_construct)

    @classmethod
    def connect(cls, url: str, api_key: str | None, collection: str, timeout_s: float,
                **layout: Any) -> ServerStore:
        from qdrant_client import QdrantClient

        # Without check_compatibility=False the client asks for the server's version on a
        # thread of its own and warns (UserWarning, on the terminal) when the server does
        # not answer; an unreachable or incompatible server is our one-line StoreError at
        # the first call instead.
        client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout_s),
                              check_compatibility=False)
        return cls(client, collection, where=f"the Qdrant server at {url}", **layout)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:  # httpx/grpc/qdrant errors: one clear line
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise StoreError(f"{self.where} failed: {text}") from None

    def exists(self) -> bool:
        return bool(self._call(self.client.collection_exists, self.collection))

    def ensure_collection(self, dim: int) -> None:
        m = self.m
        if self.exists():
            info = self._call(self.client.get_collection, self.collection)
            vectors = info.config.params.vectors
            dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
            have = dense.size if dense is not None else None
            check_dimension(self.collection, have, dim)
            return
        self._call(
            self.client.create_collection,
            self.collection,
            vectors_config={DENSE: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
            sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            hnsw_config=self.hnsw,
            **self.layout,
        )
        for name in KEYWORD_FIELDS:
            self._call(self.client.create_payload_index, self.collection, name,
                       m.PayloadSchemaType.KEYWORD)
        for name in INTEGER_FIELDS:
            self._call(self.client.create_payload_index, self.collection, name,
                       m.PayloadSchemaType.INTEGER)

    def _filter(self, where: Where) -> Any:
        return to_filter(where, self.conditions)

    def upsert(self, points: list[PointIn]) -> None:
        with span("rag.upsert", rag__points=len(points)):
            self._upsert(points)

    def _upsert(self, points: list[PointIn]) -> None:
        self.generation += 1
        m = self.m
        if not points:
            return
        self._call(self.client.upsert, self.collection, wait=True, points=[
            m.PointStruct(id=p.id, payload=p.payload, vector={
                DENSE: p.dense,
                SPARSE: m.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
            })
            for p in points
        ])

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        self.generation += 1
        self._call(self.client.set_payload, self.collection, payload=payload,
                   points=self.m.FilterSelector(filter=self._filter(where)), wait=True)

    def delete(self, where: Where) -> None:
        self.generation += 1
        if not self.exists():
            return
        self._call(self.client.delete, self.collection,
                   points_selector=self.m.FilterSelector(filter=self._filter(where)), wait=True)

    def query(self, *, dense: list[float] | None, sparse: Sparse | None, mode: SearchMode,
              where: Where, limit: int, rrf_k: int = 60,
              with_payload: bool = True) -> list[PointOut]:
        with span("rag.search", rag__mode=str(mode), rag__limit=limit):
            return self._query(dense=dense, sparse=sparse, mode=mode, where=where, limit=limit,
                               rrf_k=rrf_k, with_payload=with_payload)

    def _query(self, *, dense: list[float] | None, sparse: Sparse | None, mode: SearchMode,
               where: Where, limit: int, rrf_k: int = 60,
               with_payload: bool = True) -> list[PointOut]:
        m = self.m
        search = search_for(dense, sparse, mode)
        if search is None or not self.exists():
            return []
        flt = self._filter(where)
        sparse_q = (m.SparseVector(indices=search.sparse.indices, values=search.sparse.values)
                    if search.sparse is not None else None)
        if search.hybrid:
            result = self._call(
                self.client.query_points, self.collection,
                prefetch=[m.Prefetch(query=search.dense, using=DENSE, limit=limit, filter=flt),
                          m.Prefetch(query=sparse_q, using=SPARSE, limit=limit, filter=flt)],
                query=m.RrfQuery(rrf=m.Rrf(k=rrf_k)), query_filter=flt, limit=2 * limit,
                with_payload=with_payload,
            )
        else:
            by_dense = search.dense is not None
            result = self._call(
                self.client.query_points, self.collection,
                query=search.dense if by_dense else sparse_q, using=DENSE if by_dense else SPARSE,
                query_filter=flt, limit=limit, with_payload=with_payload,
            )
        return best_scored(result.points, limit) if search.hybrid else scored(result.points)

    def retrieve(self, ids: list[str]) -> list[PointOut]:
        if not ids or not self.exists():
            return []
        return records(self._call(self.client.retrieve, self.collection, ids=ids,
                                  with_payload=True, with_vectors=False))

    def scroll(self, where: Where, batch: int = 1000,
               fields: tuple[str, ...] | None = None) -> Iterator[PointOut]:
        if not self.exists():
            return
        flt = self._filter(where)
        yield from scroll_pages(lambda offset: self._call(
            self.client.scroll, self.collection, scroll_filter=flt, limit=batch, offset=offset,
            with_payload=True if fields is None else list(fields), with_vectors=False))

    def page(self, where: Where, limit: int, offset: str | None = None,
             fields: tuple[str, ...] | None = None) -> tuple[list[PointOut], str | None]:
        if not self.exists():
            return [], None
        found, after = self._call(
            self.client.scroll, self.collection, scroll_filter=self._filter(where), limit=limit,
            offset=offset, with_payload=True if fields is None else list(fields),
            with_vectors=False)
        return page_of(found, after)

    def changes_since(self, generation: int) -> Changes | None:
        """Other processes write a server: what changed is not known here."""
        return None

    def count(self, where: Where) -> int:
        if not self.exists():
            return 0
        return int(self._call(self.client.count, self.collection, count_filter=self._filter(where),
                              exact=True).count)

    def optimize(self) -> None:
        """A server optimizes in the background."""

    def close(self) -> None:
        self._call(self.client.close)
