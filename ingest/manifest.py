"""The manifest kept in memory: every live document's entry, sorted by (source, id), brought
up to date after a write by reading again only the documents the write touched.

At 100,000 documents a full read of the manifest takes seconds; every question needs it and
every committed document changes it, so re-reading it all after each write would make a
running ingest slow every question."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable

from ingest.payload import ChunkPayload, manifest
from ingest.store import Store, Where
from ingest.store.base import Changes


def order(entry: ChunkPayload) -> tuple[str, str]:
    return entry.source, entry.document_id


class Manifest:
    """`entries()` is the live documents' entries in (source, id) order. The store's change
    log says which documents a write touched; when it cannot (a server other processes
    write), the whole manifest is read again once it is `max_age_s` old, or after a write."""

    def __init__(self, store: Store, max_age_s: float | None = None,
                 on_read: Callable[[list[ChunkPayload]], None] | None = None):
        self.store = store
        self.max_age_s = max_age_s
        self.on_read = on_read or (lambda entries: None)
        self._keys: list[tuple[str, str]] = []
        self._entries: list[ChunkPayload] = []
        self._by_id: dict[str, ChunkPayload] = {}
        self._children: dict[str, set[str]] = {}  # a top file's carried documents
        self._generation: int | None = None
        self._read_at = 0.0
        self.full_reads = 0  # how often everything was read (a test's and a bench's view)
        self._lock = threading.Lock()  # readers of the store ask from several threads

    def entries(self) -> list[ChunkPayload]:
        with self._lock:
            return self._current()

    def _current(self) -> list[ChunkPayload]:
        generation = self.store.generation
        if self._generation is None or self._stale():
            self._read_all(generation)
        elif generation != self._generation:
            changes = self.store.changes_since(self._generation)
            if changes is None:
                self._read_all(generation)
            else:
                self._update(changes)
                self._generation = generation
        return self._entries

    def _stale(self) -> bool:
        return self.max_age_s is not None and time.monotonic() - self._read_at >= self.max_age_s

    def _read_all(self, generation: int) -> None:
        entries = sorted(manifest(self.store), key=order)
        self.on_read(entries)
        self._entries, self._keys = entries, [order(e) for e in entries]
        self._by_id = {}
        self._children = {}
        for entry in entries:
            self._index(entry)
        self._generation, self._read_at = generation, time.monotonic()
        self.full_reads += 1

    def _update(self, changes: Changes) -> None:
        """Drops the entries of the touched documents, then puts back what is live now."""
        if not changes.document_ids and not changes.parents:
            return
        entries = list(self._entries)  # a caller's earlier list stays as it was
        ids = set(changes.document_ids)
        for parent in changes.parents:
            ids |= self._children.get(parent, set())
        for entry in [self._by_id[i] for i in ids if i in self._by_id]:
            i = bisect.bisect_left(self._keys, order(entry))
            del self._keys[i], entries[i]
            self._unindex(entry)
        fresh = list(self._touched(changes))
        self.on_read(fresh)
        for entry in fresh:
            i = bisect.bisect_left(self._keys, order(entry))
            self._keys.insert(i, order(entry))
            entries.insert(i, entry)
            self._index(entry)
        self._entries = entries

    def _index(self, entry: ChunkPayload) -> None:
        self._by_id[entry.document_id] = entry
        if entry.parent:
            self._children.setdefault(entry.parent, set()).add(entry.document_id)

    def _unindex(self, entry: ChunkPayload) -> None:
        del self._by_id[entry.document_id]
        if entry.parent:
            self._children.get(entry.parent, set()).discard(entry.document_id)

    def _touched(self, changes: Changes) -> Iterable[ChunkPayload]:
        seen: set[str] = set()
        wheres = [Where(any_of={"document_id": tuple(sorted(changes.document_ids))}),
                  Where(any_of={"parent": tuple(sorted(changes.parents))})]
        for where in wheres:
            if not next(iter(where.any_of.values())):
                continue
            for entry in manifest(self.store, where):
                if entry.document_id not in seen:
                    seen.add(entry.document_id)
                    yield entry
