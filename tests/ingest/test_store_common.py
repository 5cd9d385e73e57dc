"""The store logic both stores share (pure): filter shape, which search a query makes, the
dimension check and the scroll loop."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from core.choices import SearchMode
from core.errors import StoreError
from ingest.store import Sparse, Where
from ingest.store.common import (
    best_scored,
    by_score,
    check_dimension,
    scored,
    scroll_pages,
    search_for,
    to_filter,
)


class _Spell:
    def equals(self, key: str, value: str | int) -> Any:
        return ("=", key, value)

    def any_of(self, key: str, values: list[str]) -> Any:
        return ("in", key, tuple(values))

    def conjunction(self, must: list[Any] | None, must_not: list[Any] | None) -> Any:
        return {"must": must, "must_not": must_not}


def test_filter_shape() -> None:
    assert to_filter(Where(), _Spell()) is None
    where = Where(equals={"state": "live"}, any_of={"document_id": ("a", "b")},
                  not_equals={"doc_hash": "v1"})
    assert to_filter(where, _Spell()) == {
        "must": [("=", "state", "live"), ("in", "document_id", ("a", "b"))],
        "must_not": [("=", "doc_hash", "v1")]}
    assert to_filter(Where(not_equals={"x": 1}), _Spell()) == {"must": None,
                                                              "must_not": [("=", "x", 1)]}


WORDS = Sparse([1, 2], [0.5, 0.5])
NO_WORDS = Sparse([], [])


@pytest.mark.parametrize(("dense", "sparse", "mode", "expected"), [
    ([0.1], WORDS, SearchMode.HYBRID, "hybrid"),
    ([0.1], NO_WORDS, SearchMode.HYBRID, "dense"),  # no known word: dense alone
    ([0.1], None, SearchMode.HYBRID, "dense"),
    (None, WORDS, SearchMode.HYBRID, None),
    ([0.1], WORDS, SearchMode.DENSE, "dense"),
    (None, WORDS, SearchMode.DENSE, None),
    ([0.1], WORDS, SearchMode.KEYWORD, "keyword"),
    ([0.1], NO_WORDS, SearchMode.KEYWORD, None),
])
def test_which_search_a_query_makes(dense: Any, sparse: Any, mode: SearchMode,
                                    expected: str | None) -> None:
    search = search_for(dense, sparse, mode)
    if expected is None:
        assert search is None
        return
    assert search is not None
    kind = "hybrid" if search.hybrid else "dense" if search.dense is not None else "keyword"
    assert kind == expected


def test_dimension_check_names_the_collection() -> None:
    check_dimension("docs", None, 384)
    check_dimension("docs", 384, 384)
    with pytest.raises(StoreError, match="collection docs holds 768-d vectors .* 384-d"):
        check_dimension("docs", 768, 384)


def test_scroll_follows_offsets_to_the_end() -> None:
    pages = {None: ([SimpleNamespace(id=1, payload={"n": 1})], "b"),
             "b": ([SimpleNamespace(id=2, payload=None)], None)}
    asked: list[Any] = []

    def page(offset: Any) -> Any:
        asked.append(offset)
        return pages[offset]

    out = list(scroll_pages(page))
    assert [(p.id, p.payload) for p in out] == [("1", {"n": 1}), ("2", {})]
    assert asked == [None, "b"]


@pytest.mark.parametrize("limit", [1, 5, 17, 40, 80])
def test_best_scored_keeps_what_sorting_every_point_keeps(limit: int) -> None:
    """Fused scores tie in pairs and runs (RRF): the points kept, and their order, are those
    of converting every point and sorting by score then id."""
    rng = random.Random(limit)
    points = [SimpleNamespace(id=f"{rng.getrandbits(32):08x}", payload=None,
                              score=1 / (60 + rng.randint(1, 12))) for _ in range(40)]
    assert best_scored(points, limit) == by_score(scored(points), limit)
    assert len(best_scored(points, limit)) == min(limit, 40)
