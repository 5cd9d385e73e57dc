"""The embedded store: Qdrant Edge, the Qdrant engine in-process, on disk."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.choices import SearchMode
from core.errors import StoreError, StoreLockedError
from core.tracing import span
from ingest.store.base import (
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    LIVE,
    SPARSE,
    Changes,
    PointIn,
    PointOut,
    Sparse,
    Where,
)
from ingest.store.common import (
    ChangeLog,
    best_scored,
    check_dimension,
    page_of,
    records,
    scored,
    scroll_pages,
    search_for,
    to_filter,
    upserted,
    written,
)

LIVE_ONLY = Where(equals={"state": LIVE})


class _Conditions:
    """Payload conditions in qdrant_edge's terms."""

    def __init__(self, q: Any):
        self.q = q

    def equals(self, key: str, value: str | int) -> Any:
        return self.q.FieldCondition(key=key, match=self.q.MatchValue(value))

    def any_of(self, key: str, values: list[str]) -> Any:
        return self.q.FieldCondition(key=key, match=self.q.MatchAny(values))

    def conjunction(self, must: list[Any] | None, must_not: list[Any] | None) -> Any:
        return self.q.Filter(must=must, must_not=must_not)


# Points in one indexed segment (`store.segment_points`). Edge's `optimize` turns the segment
# that takes writes into one indexed segment however large it has grown, and an HNSW graph
# costs more per point the larger it is: on pack.py's random 384-d vectors, 100k points took
# 435 CPU s in one segment and 192 s in two of 50k (same machine and load), with the same
# search CPU time and a better recall. So the store optimizes each time this many points
# have been written, and caps the segments the merge optimizer makes at that size
# (bench/README.md, "pack.py at 1M chunks: capped segments"). Each segment indexed during a
# run raises that run's peak memory, though: a 200 MB text file (~106k chunks) peaked 2,331 MB
# above idle at 50,000 a segment and 1,485 MB at 200,000 (one index at the end, as before);
# so 200,000, and a smaller `store.segment_points` for a faster build of a large store.
SEGMENT_POINTS = 200_000
INDEXING_KIB = 20_000  # Qdrant's default indexing threshold: smaller segments are scanned


def segment_kib(points: int, dim: int) -> int:
    """The size Edge counts for `points` dense float32 vectors of `dim`, in KiB."""
    return points * dim * 4 // 1024


class EdgeStore:
    kind = "edge"
    generation = 0  # bumped on every write: readers cache what depends on the contents

    def __init__(self, path: Path, hnsw_m: int = 16, hnsw_ef_construct: int = 100,
                 segment_points: int = SEGMENT_POINTS):
        import qdrant_edge as q

        self.q = q
        self.conditions = _Conditions(q)
        self.path = path
        self.hnsw = (hnsw_m, hnsw_ef_construct)
        self.segment_points = segment_points
        self._unindexed = 0  # points written since the last optimize
        self.changes = ChangeLog()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(path.parent / f".{path.name}.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StoreLockedError(
                f"the embedded store {path} is in use by another process (is `rag api` "
                "running?): send the work through the running API, or stop it first"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        self.shard: Any = None
        self._live_count = (-1, False)  # (generation, whether every point was live then)
        if (path / "edge_config.json").is_file():
            try:
                self.shard = q.EdgeShard.load(str(path), self._optimizers_on_open())
            except Exception as exc:
                self.close()
                raise StoreError(f"cannot open the embedded store {path}: {exc}") from None

    def exists(self) -> bool:
        return self.shard is not None

    def ensure_collection(self, dim: int) -> None:
        q = self.q
        if self.shard is not None:
            check_dimension(self.path.name, self.shard_dim(), dim)
            return
        config = q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine)},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            hnsw_config=q.HnswIndexConfig(m=self.hnsw[0], ef_construct=self.hnsw[1],
                                           full_scan_threshold=10_000),
            # Every search reads the payloads (text) of hundreds of hits and neighbours:
            # warmed into the page cache when the shard opens instead of page by page on
            # the first questions ("cached" tier; Qdrant's default for payloads is "cold").
            payload_memory=q.Memory.Cached,
            optimizers=self._optimizers(dim),
        )
        self.shard = q.EdgeShard.create(str(self.path), config)
        for name in KEYWORD_FIELDS:
            self.shard.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Keyword))
        for name in INTEGER_FIELDS:
            self.shard.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Integer))

    def _optimizers(self, dim: int) -> Any:
        """Segments capped at `segment_points`; a full one is always indexed (a cap below
        Qdrant's indexing threshold would leave every segment to full scans)."""
        cap = segment_kib(self.segment_points, dim)
        return self.q.EdgeOptimizersConfig(max_segment_size=cap,
                                           indexing_threshold=min(INDEXING_KIB, cap // 2))

    def _optimizers_on_open(self) -> Any:
        """The segment cap for a store opened from disk, written into its config (a store
        made before the cap gets it; its segments stay as they are until rewritten). What
        is not given keeps its stored value; Edge wants the vectors named to check them."""
        q = self.q
        dim = self.shard_dim()
        if dim is None:
            return None
        return q.EdgeConfig(vectors={DENSE: q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine)},
                            optimizers=self._optimizers(dim))

    def shard_dim(self) -> int | None:
        import json

        config = json.loads((self.path / "edge_config.json").read_text())
        dense = (config.get("vectors") or config.get("vector_data") or {}).get(DENSE)
        return int(dense["size"]) if dense and "size" in dense else None

    def _filter(self, where: Where) -> Any:
        return to_filter(where, self.conditions)

    def upsert(self, points: list[PointIn]) -> None:
        with span("rag.upsert", rag__points=len(points)):
            self._upsert(points)

    def _wrote(self, changes: Changes | None) -> None:
        """Called once a write has landed (or failed): a reader that saw the generation
        unchanged over a read read current contents (retrieval/kept_chunks.py)."""
        self.generation += 1
        self.changes.record(self.generation, changes)

    def changes_since(self, generation: int) -> Changes | None:
        return self.changes.since(generation, self.generation)

    def _upsert(self, points: list[PointIn]) -> None:
        try:
            if points:
                self._upsert_points(points)
                self._index_when_full(len(points))
        finally:
            self._wrote(upserted(points))

    def _index_when_full(self, written_points: int) -> None:
        """Indexes the segment taking writes once it holds `segment_points`, so no segment
        grows past the cap however much one run writes before its final optimize."""
        self._unindexed += written_points
        if self._unindexed >= self.segment_points:
            self.optimize()

    def _upsert_points(self, points: list[PointIn]) -> None:
        q = self.q
        self.shard.update(q.UpdateOperation.upsert_points([
            q.Point(
                id=p.id,
                vector={DENSE: p.dense, SPARSE: q.SparseVector(p.sparse.indices, p.sparse.values)},
                payload=p.payload,
            )
            for p in points
        ]))

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        try:
            if self.shard is not None:
                self.shard.update(self.q.UpdateOperation.set_payload_by_filter(self._filter(where),
                                                                             payload))
        finally:
            self._wrote(written(where))

    def delete(self, where: Where) -> None:
        try:
            if self.shard is not None:
                self.shard.update(self.q.UpdateOperation.delete_points_by_filter(self._filter(where)))
        finally:
            self._wrote(written(where))

    def query(self, *, dense: list[float] | None, sparse: Sparse | None, mode: SearchMode,
              where: Where, limit: int, rrf_k: int = 60,
              with_payload: bool = True) -> list[PointOut]:
        with span("rag.search", rag__mode=str(mode), rag__limit=limit):
            return self._query(dense=dense, sparse=sparse, mode=mode, where=where, limit=limit,
                               rrf_k=rrf_k, with_payload=with_payload)

    def _query(self, *, dense: list[float] | None, sparse: Sparse | None, mode: SearchMode,
               where: Where, limit: int, rrf_k: int = 60,
               with_payload: bool = True) -> list[PointOut]:
        if self.shard is None:
            return []
        search = search_for(dense, sparse, mode)
        if search is None:
            return []
        q = self.q
        flt = self._search_filter(where)
        dense_q = q.Query.Nearest(search.dense, using=DENSE) if search.dense is not None else None
        sparse_q = (q.Query.Nearest(q.SparseVector(search.sparse.indices, search.sparse.values),
                                    using=SPARSE) if search.sparse is not None else None)
        if search.hybrid:
            request = q.QueryRequest(
                limit=2 * limit,
                prefetches=[q.Prefetch(limit=limit, query=dense_q, filter=flt),
                            q.Prefetch(limit=limit, query=sparse_q, filter=flt)],
                query=q.Fusion.Rrf(k=rrf_k), filter=flt, with_payload=False,
            )
            best = best_scored(self.shard.query(request), limit)
            return self._with_payloads(best) if with_payload else best
        single = dense_q if dense_q is not None else sparse_q
        request = q.QueryRequest(limit=limit, query=single, filter=flt,
                                 with_payload=with_payload)
        return scored(self.shard.query(request))

    def _search_filter(self, where: Where) -> Any:
        """`where` for a search; none for the live state alone when every point is live: the
        condition then changes no result, and checking it on every point the HNSW search
        visits made a fused query of 250 candidates at 100k chunks ~1.7x as slow (bench/
        README.md, "Retrieve + pack at 100k chunks: the last cuts")."""
        if where == LIVE_ONLY and self._only_live():
            return None
        return self._filter(where)

    def _only_live(self) -> bool:
        """Whether the shard holds live points only, counted once per generation. A write
        bumps the generation once it has landed, so a count taken before that may miss
        points it staged: their hits are read and left out (retrieval reads state too)."""
        generation = self.generation
        if self._live_count[0] != generation:
            self._live_count = (generation, self.count(Where(not_equals={"state": LIVE})) == 0)
        return self._live_count[1]

    def _with_payloads(self, points: list[PointOut]) -> list[PointOut]:
        assert self.shard is not None
        # Ids go as strings: Qdrant Edge parses them (a bad one raises ValueError as
        # uuid.UUID does) faster than uuid.UUID objects are made here.
        payloads = {str(r.id): r.payload or {} for r in self.shard.retrieve(
            [p.id for p in points], with_payload=True, with_vector=False)}
        return [PointOut(p.id, payloads.get(p.id, {}), p.score) for p in points]

    def retrieve(self, ids: list[str]) -> list[PointOut]:
        if self.shard is None or not ids:
            return []
        return records(self.shard.retrieve(list(ids), with_payload=True, with_vector=False))

    def scroll(self, where: Where, batch: int = 1000,
               fields: tuple[str, ...] | None = None) -> Iterator[PointOut]:
        if self.shard is None:
            return
        flt = self._filter(where)
        yield from scroll_pages(lambda offset: self.shard.scroll(self.q.ScrollRequest(
            offset=offset, limit=batch, filter=flt, with_payload=self._selector(fields),
            with_vector=False)))

    def page(self, where: Where, limit: int, offset: str | None = None,
             fields: tuple[str, ...] | None = None) -> tuple[list[PointOut], str | None]:
        if self.shard is None:
            return [], None
        found, after = self.shard.scroll(self.q.ScrollRequest(
            offset=None if offset is None else uuid.UUID(offset), limit=limit,
            filter=self._filter(where), with_payload=self._selector(fields), with_vector=False))
        return page_of(found, after)

    def _selector(self, fields: tuple[str, ...] | None) -> Any:
        return True if fields is None else self.q.PayloadSelector.Include(list(fields))

    def count(self, where: Where) -> int:
        if self.shard is None:
            return 0
        return int(self.shard.count(self.q.CountRequest(exact=True, filter=self._filter(where))))

    def optimize(self) -> None:
        if self.shard is not None:
            self.shard.optimize()
        self._unindexed = 0

    def close(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
