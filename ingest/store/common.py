"""What the two stores share, the way qdrant-client shares its conversions: the filter's
shape, the dimension check, the scroll loop and which search a query makes. Each store keeps
a small translator for how its client library spells conditions and requests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.choices import SearchMode
from core.errors import StoreError
from ingest.store.base import STAGED, Changes, PointIn, PointOut, Sparse, Where


class Conditions(Protocol):
    """One client library's payload conditions."""

    def equals(self, key: str, value: str | int) -> Any: ...

    def any_of(self, key: str, values: list[str]) -> Any: ...

    def conjunction(self, must: list[Any] | None, must_not: list[Any] | None) -> Any: ...


def to_filter(where: Where, spell: Conditions) -> Any:
    """`where` in the library's terms; None (no filter) when it has no condition."""
    must = [spell.equals(k, v) for k, v in where.equals.items()]
    must += [spell.any_of(k, list(v)) for k, v in where.any_of.items()]
    must_not = [spell.equals(k, v) for k, v in where.not_equals.items()]
    if not must and not must_not:
        return None
    return spell.conjunction(must or None, must_not or None)


def check_dimension(collection: str, have: int | None, dim: int) -> None:
    if have is not None and have != dim:
        raise StoreError(
            f"collection {collection} holds {have}-d vectors but the embedder makes "
            f"{dim}-d ones: use another store.collection or re-ingest into a new one"
        )


@dataclass(frozen=True)
class Search:
    """The search a query makes: both vectors set is a hybrid (fused) search, one alone a
    single search over it."""

    dense: list[float] | None
    sparse: Sparse | None

    @property
    def hybrid(self) -> bool:
        return self.dense is not None and self.sparse is not None


def search_for(dense: list[float] | None, sparse: Sparse | None,
               mode: SearchMode) -> Search | None:
    """None when the mode's vector is missing (a question with no known word searched by
    keywords alone finds nothing). A hybrid query with no keyword vector searches dense."""
    keywords = sparse if sparse is not None and sparse.indices else None
    if mode == SearchMode.HYBRID and dense is not None and keywords is not None:
        return Search(dense, keywords)
    if mode == SearchMode.KEYWORD:
        return Search(None, keywords) if keywords is not None else None
    return Search(dense, None) if dense is not None else None


def scored(points: Iterable[Any]) -> list[PointOut]:
    return [PointOut(str(p.id), p.payload or {}, p.score) for p in points]


def by_score(points: Iterable[PointOut], limit: int) -> list[PointOut]:
    """The `limit` best, highest score first and ties by id. RRF gives exactly equal scores
    to a hit of one list and the hit at the same rank of the other, and Qdrant Edge orders
    such ties differently from one query to the next: a fused query asks for every candidate
    (both prefetches' `limit`) and cuts here, so the same question finds the same hits."""
    return sorted(points, key=lambda p: (-p.score, p.id))[:limit]


def best_scored(points: Sequence[Any], limit: int) -> list[PointOut]:
    """`by_score(scored(points), limit)`, converting only the points it keeps and the ties at
    the cut: a fused query returns twice `limit` points, and Qdrant Edge makes a uuid.UUID
    for each id read."""
    if len(points) <= limit:
        return by_score(scored(points), limit)
    ranked = sorted(points, key=lambda p: -p.score)
    cut = ranked[limit - 1].score
    above = scored(p for p in ranked[:limit] if p.score > cut)
    tied = by_score(scored(p for p in ranked if p.score == cut), limit - len(above))
    return by_score(above + tied, limit)


def records(found: Iterable[Any]) -> list[PointOut]:
    return [PointOut(str(r.id), r.payload or {}) for r in found]


def scroll_pages(page: Callable[[Any], tuple[list[Any], Any]]) -> Iterator[PointOut]:
    """Every record, page by page: `page(offset)` gives a page and the next offset (None
    after the last)."""
    offset = None
    while True:
        found, offset = page(offset)
        yield from records(found)
        if offset is None:
            return


def page_of(found: Iterable[Any], after: Any) -> tuple[list[PointOut], str | None]:
    return records(found), (None if after is None else str(after))


def written(where: Where) -> Changes | None:
    """The documents a filtered write touches: none when it names only staged points (not
    live, so in no listing), None when it names no document."""
    if where.equals.get("state") == STAGED:
        return Changes()
    ids = _values(where, "document_id")
    parents = _values(where, "parent")
    if not ids and not parents:
        return None
    return Changes(frozenset(ids), frozenset(parents))


def _values(where: Where, key: str) -> set[str]:
    found = set(where.any_of.get(key, ()))
    if key in where.equals:
        found.add(str(where.equals[key]))
    return found


def upserted(points: Iterable[PointIn]) -> Changes | None:
    ids = set()
    for p in points:
        if p.payload.get("state") == STAGED:
            continue
        if "document_id" not in p.payload:
            return None
        ids.add(str(p.payload["document_id"]))
    return Changes(frozenset(ids))


class ChangeLog:
    """The documents each write touched, by the store's generation after it, so a reader's
    per-document cache (the manifest) re-reads only those. The oldest are forgotten: a
    reader that far behind reads everything again."""

    KEEP = 10_000

    def __init__(self) -> None:
        self._writes: dict[int, Changes | None] = {}

    def record(self, generation: int, changes: Changes | None) -> None:
        self._writes[generation] = changes
        if len(self._writes) > self.KEEP:
            del self._writes[next(iter(self._writes))]

    def since(self, generation: int, now: int) -> Changes | None:
        if now == generation:
            return Changes()
        if generation + 1 not in self._writes:
            return None
        total = Changes()
        for g in range(generation + 1, now + 1):
            step = self._writes.get(g)
            if step is None:
                return None
            total = total | step
        return total
