"""Qdrant Edge's read side: a search over a store whose points are all live leaves the state
condition out, and finds what the filtered search finds; a write that stages points brings
the condition back before the next search, so a staged point is never a hit."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.choices import SearchMode
from ingest.payload import point_id
from ingest.store import LIVE, STAGED, PointIn, Sparse, Where
from ingest.store.edge import EdgeStore

DIM = 8
LIVE_ONLY = Where(equals={"state": LIVE})
QUERY = [1.0, 0.5, 0.0, 0.0, 0.2, 0.0, 0.0, 0.1]
WORDS = Sparse([3, 7], [1.0, 1.0])  # the query's keywords


def _point(i: int, state: str, dense: list[float], sparse: Sparse) -> PointIn:
    return PointIn(point_id("doc", state, i), dense, sparse,
                   {"document_id": f"doc-{state}", "chunk_index": i, "state": state})


def _random_points(n: int, state: str, seed: int) -> list[PointIn]:
    rng = random.Random(seed)
    return [_point(i, state, [rng.uniform(-1, 1) for _ in range(DIM)],
                   Sparse(sorted(rng.sample(range(12), 3)), [rng.uniform(0.1, 2) for _ in range(3)]))
            for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    s = EdgeStore(tmp_path / "edge")
    s.ensure_collection(DIM)
    s.upsert(_random_points(300, LIVE, seed=1))
    try:
        yield s
    finally:
        s.close()


def _ids(store: EdgeStore, mode: SearchMode, limit: int = 20) -> list[tuple[str, float]]:
    points = store.query(dense=QUERY, sparse=WORDS, mode=mode, where=LIVE_ONLY, limit=limit,
                         with_payload=False)
    return [(p.id, p.score) for p in points]


@pytest.mark.parametrize("mode", [SearchMode.HYBRID, SearchMode.DENSE, SearchMode.KEYWORD])
def test_a_live_only_store_finds_what_the_filtered_search_finds(store: EdgeStore,
                                                              mode: SearchMode) -> None:
    unfiltered = _ids(store, mode)  # every point live: searched without the condition
    found = {i for i, _ in unfiltered}
    # One point that is no hit goes back to staged (the point count, which keyword IDF
    # weights depend on, stays): the condition is back, and the hits are the same.
    other = next(i for i in range(300) if point_id("doc", LIVE, i) not in found)
    store.set_payload(Where(equals={"document_id": f"doc-{LIVE}", "chunk_index": other}),
                      {"state": STAGED})
    assert store.count(Where(equals={"state": STAGED})) == 1
    assert _ids(store, mode) == unfiltered
    assert len(unfiltered) == 20


def test_staged_points_are_never_hits_and_count_once_live(store: EdgeStore) -> None:
    before = _ids(store, SearchMode.HYBRID)
    best = [_point(i, STAGED, QUERY, WORDS) for i in range(5)]  # would rank first
    store.upsert(best)
    assert _ids(store, SearchMode.HYBRID) == before
    store.set_payload(Where(equals={"document_id": f"doc-{STAGED}"}), {"state": LIVE})
    flipped = [i for i, _ in _ids(store, SearchMode.HYBRID)]
    assert set(flipped[:5]) == {p.id for p in best}
    store.delete(Where(equals={"document_id": f"doc-{STAGED}"}))
    assert _ids(store, SearchMode.HYBRID) == before
    store.upsert([_point(9, STAGED, QUERY, WORDS)])  # after a search that saw all live
    assert _ids(store, SearchMode.DENSE)[0][0] != point_id("doc", STAGED, 9)
