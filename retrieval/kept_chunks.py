"""Chunks as the packer sees them, kept by point id between questions while the store does
not change.

At 100k chunks a question at a 128k budget reads ~230 hits and ~300 neighbours; turning
their payloads into Python objects (in Qdrant Edge, holding the GIL) and then into ChunkRefs
was about a third of its time (bench/README.md, "pack.py at 100k chunks: where a question's
time goes"). Only the embedded store is kept: this process makes every write to it, and each
write bumps `store.generation` after it lands, so a generation that did not move over a read
means what was read is current. A server that other processes write is read every time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from itertools import islice

from ingest.store import LIVE, Store
from retrieval.packer import PAYLOAD_DEFAULTS, ChunkRef


class KeptChunks:
    """Live chunks by point id, for the store's current generation, and the ids that are
    not a live chunk (a neighbour past a document's end, a staged point) as None; the
    oldest go first past `keep` entries (about 2 KiB each)."""

    def __init__(self, store: Store, keep: int = 20_000):
        self.store = store
        self.keep = keep if store.kind == "edge" else 0
        self._refs: dict[str, ChunkRef | None] = {}
        self._generation = store.generation
        self._lock = threading.Lock()  # the API's threads share one retriever
        self.fetched = 0  # chunks read from the store (a test's view of the hits)

    def live(self, ids: list[str]) -> dict[str, ChunkRef]:
        """The live chunks among `ids` (those not kept read from the store), by id."""
        with self._lock:
            generation = self.store.generation
            if generation != self._generation:
                self._refs.clear()
                self._generation = generation
            known = {i: self._refs[i] for i in ids if i in self._refs}
        missing = [i for i in ids if i not in known]
        fetched: dict[str, ChunkRef | None] = dict.fromkeys(missing)
        if missing:
            fetched.update(read_live(self.store.retrieve, missing))
        self.fetched += len(missing)
        self._add(fetched, generation)
        return {i: c for i, c in (known | fetched).items() if c is not None}

    def _add(self, fetched: dict[str, ChunkRef | None], generation: int) -> None:
        """Keeps what was read, unless a write landed since the read began."""
        if not self.keep or not fetched:
            return
        with self._lock:
            if self.store.generation != generation or self._generation != generation:
                return
            self._refs.update(fetched)
            for old in list(islice(self._refs, max(0, len(self._refs) - self.keep))):
                del self._refs[old]


def read_live(retrieve: Callable[[list[str]], Iterable], ids: list[str]) -> dict[str, ChunkRef]:
    """The live chunks among `ids` as the store holds them now."""
    return {p.id: ChunkRef.from_payload(p.id, p.payload) for p in retrieve(ids)
            if p.payload.get("state", PAYLOAD_DEFAULTS["state"]) == LIVE}
