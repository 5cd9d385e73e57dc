"""The small store interface the rest of the code speaks; two implementations behind it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.choices import SearchMode

DENSE = "dense"
SPARSE = "keywords"

# Payload fields that filters use; both stores index them.
KEYWORD_FIELDS = ("document_id", "source", "type", "state", "doc_hash", "parent")
INTEGER_FIELDS = ("chunk_index",)

LIVE = "live"  # chunks of a document whose ingestion finished
STAGED = "staged"  # chunks written but not yet committed (invisible to search)


@dataclass(frozen=True)
class Where:
    """A conjunction of payload conditions, translated by each store."""

    equals: dict[str, str | int] = field(default_factory=dict)
    any_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_equals: dict[str, str | int] = field(default_factory=dict)

    def and_(self, other: Where) -> Where:
        return Where({**self.equals, **other.equals}, {**self.any_of, **other.any_of},
                     {**self.not_equals, **other.not_equals})


@dataclass(frozen=True)
class Changes:
    """The documents some writes touched: by id, and carried documents by their parent's id."""

    document_ids: frozenset[str] = frozenset()
    parents: frozenset[str] = frozenset()

    def __or__(self, other: Changes) -> Changes:
        return Changes(self.document_ids | other.document_ids, self.parents | other.parents)


@dataclass(frozen=True)
class Sparse:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class PointIn:
    id: str
    dense: list[float]
    sparse: Sparse
    payload: dict[str, Any]


@dataclass(frozen=True)
class PointOut:
    id: str
    payload: dict[str, Any]
    score: float = 0.0


class Store(Protocol):
    """What ingestion writes and retrieval reads; nothing else touches Qdrant."""

    kind: str
    generation: int

    def ensure_collection(self, dim: int) -> None: ...

    def exists(self) -> bool: ...

    def upsert(self, points: list[PointIn]) -> None: ...

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None: ...

    def delete(self, where: Where) -> None: ...

    def query(self, *, dense: list[float] | None, sparse: Sparse | None, mode: SearchMode,
              where: Where, limit: int, rrf_k: int = 60,
              with_payload: bool = True) -> list[PointOut]: ...

    def retrieve(self, ids: list[str]) -> list[PointOut]: ...

    def scroll(self, where: Where, batch: int = 1000,
               fields: tuple[str, ...] | None = None) -> Iterator[PointOut]: ...

    def page(self, where: Where, limit: int, offset: str | None = None,
             fields: tuple[str, ...] | None = None) -> tuple[list[PointOut], str | None]:
        """Up to `limit` points from `offset` (a point id a previous page gave, None for the
        first) and the next page's offset (None after the last); only `fields` of each
        payload when given."""
        ...

    def changes_since(self, generation: int) -> Changes | None:
        """What this process's writes after `generation` touched, or None when that is not
        known (a write that named no document, or a server that others write)."""
        ...

    def count(self, where: Where) -> int: ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...
