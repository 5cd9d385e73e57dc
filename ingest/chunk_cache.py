"""Each section's chunks kept by what decides them: the section's text, the chunking
settings, the tokenizer and the chunker's own code. The chunker cuts every section on its
own, so an edited document re-tokenizes only its changed pages; the rest are read back.

One SQLite file next to the embedding cache (data_dir/embeddings/chunks.sqlite), bounded
(`chunking.cache_mb`): past the bound the least recently used entries are dropped down to
nine tenths of it. New entries and the last use of found ones are written in one transaction
per batch of sections, and a key is the hash of the very text (and settings) its chunks were
cut from, so a run killed at any moment leaves whole entries or none, never chunks under
another text's key. A section continued in the next one (`more`: a long text read in
pieces) is chunked as it streams and not kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest import chunker as chunker_module
from ingest.chunker import Chunk, Chunker
from ingest.embed_cache import open_cache_db

if TYPE_CHECKING:
    from core.settings import Settings
    from ingest.loaders import Section
    from ingest.tokenizer import TokenCounter

log = logging.getLogger(__name__)

_FLUSH = 64  # sections per transaction
# Text whose token ids, offsets and pre-token groups tell one tokenizer from another
# (hashing the whole tokenizer.json would take longer than chunking a book).
_PROBE = ("Page 12, part 3: The ferry runs twice a day.\n\n| a | b |\n| --- | --- |\n"
          "  naïve café 東京 1234567 don't   \t tabs… «quotes» </s> <|eot_id|> 🙂")
# The fields of a Chunk a section's own text decides (the rest come from where it stands).
_OWN = ("text", "core_offset", "char_start", "char_end", "tokens", "core_tokens",
        "end_tokens", "content_hash", "table_header")


def chunks_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "embeddings" / "chunks.sqlite"


def cached_chunker(chunker: Chunker, settings: Settings) -> CachedChunker:
    """`chunker` behind the cache `settings` configure (off when chunking.cache_mb is 0)."""
    return CachedChunker(chunker, chunks_path(settings), settings.chunking.cache_mb)


def tokenizer_fingerprint(counter: TokenCounter) -> str:
    ids = counter.tokenizer.encode(_PROBE, add_special_tokens=False)
    probe = (counter.name, counter.tokenizer.get_vocab_size(), ids.ids, ids.offsets,
             counter.pretoken_starts(_PROBE))
    return hashlib.sha256(repr(probe).encode()).hexdigest()[:32]


class CachedChunker:
    """The chunker's `stream`, with each whole section's chunks read from the cache where
    they are kept. `hits` counts sections found in the cache, `misses` sections cut."""

    def __init__(self, chunker: Chunker, path: Path, max_mb: float):
        self.chunker = chunker
        self.path = path
        self.max_bytes = int(max_mb * 2**20)
        self.hits = 0
        self.misses = 0
        self._prefix: str | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def key_prefix(self) -> str:
        if self._prefix is None:
            code = hashlib.sha256(Path(chunker_module.__file__).read_bytes()).hexdigest()[:32]
            self._prefix = (f"code={code}|size={self.chunker.size}|overlap={self.chunker.overlap}"
                            f"|tok={tokenizer_fingerprint(self.chunker.counter)}|")
        return self._prefix

    def key(self, text: str) -> bytes:
        return hashlib.sha256((self.key_prefix() + text).encode()).digest()

    def split(self, sections: list[Section]) -> list[Chunk]:
        return list(self.stream(sections))

    def stream(self, sections: Iterable[Section]) -> Iterator[Chunk]:
        """The chunks the chunker's `stream` gives for `sections`, the same field for field."""
        if not self.max_bytes:
            yield from self.chunker.stream(sections)
            return
        index = number = offset = 0
        batch = _Batch()
        rest = iter(sections)
        try:
            for section in rest:
                group = _Group(chain([section], _continued(rest)) if section.more else [section])
                own = None if section.more or not self.max_bytes \
                    else self._own_chunks(section, batch)
                for chunk in own if own is not None else self.chunker.stream(group):
                    yield replace(chunk, index=index, section=number,
                                  char_start=offset + chunk.char_start,
                                  char_end=offset + chunk.char_end)
                    index += 1
                offset += (group.length if section.more else len(section.text)) + 2
                number += 1
                if len(batch) >= _FLUSH:
                    self._write(batch)
                    batch = _Batch()
        finally:
            self._write(batch)

    def _own_chunks(self, section: Section, batch: _Batch) -> list[Chunk] | None:
        """The chunks of one whole section as if it were the document's first: from the
        cache, or cut and added to `batch`; None when the cache is unusable."""
        key = self.key(section.text)
        try:
            found = self._lookup(key)
        except sqlite3.DatabaseError as exc:
            self._give_up(exc)
            return None
        if found is not None:
            self.hits += 1
            batch.used.append(key)
            return [Chunk(index=0, section=0, page=section.page, ocr=section.ocr,
                          page_label=section.label, **dict(zip(_OWN, row, strict=True)))
                    for row in found]
        self.misses += 1
        chunks = list(self.chunker.stream([section]))
        batch.made[key] = json.dumps([[getattr(c, f) for f in _OWN] for c in chunks],
                                     ensure_ascii=False, separators=(",", ":")).encode()
        return chunks

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_cache_db(self.path, "chunks (key BLOB PRIMARY KEY, chunks BLOB "
                                     "NOT NULL, size INTEGER NOT NULL, used INTEGER NOT NULL)")
        return self._db

    def _lookup(self, key: bytes) -> list[list[Any]] | None:
        with self._lock:
            row = self._connect().execute("SELECT chunks FROM chunks WHERE key = ?",
                                          (key,)).fetchone()
        if row is None:
            return None
        try:
            found = json.loads(bytes(row[0]))
        except ValueError:
            return None  # a miss, overwritten when the section is cut
        return found if all(len(r) == len(_OWN) for r in found) else None

    def _write(self, batch: _Batch) -> None:
        """The batch's new entries stored and found ones marked used, in one transaction;
        then, past the bound, the least recently used dropped."""
        if self._db is None or not (batch.made or batch.used):
            return
        now = time.time_ns()
        try:
            with self._lock:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?)",
                                   [(k, v, len(v) + len(k), now) for k, v in batch.made.items()])
                    db.executemany("UPDATE chunks SET used = ? WHERE key = ?",
                                   [(now, k) for k in batch.used])
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                if batch.made:
                    self._evict(db)
        except sqlite3.DatabaseError as exc:
            self._give_up(exc)

    def _evict(self, db: sqlite3.Connection) -> None:
        (total,) = db.execute("SELECT coalesce(sum(size), 0) FROM chunks").fetchone()
        if total <= self.max_bytes:
            return
        db.execute("DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM (SELECT rowid, "
                   "sum(size) OVER (ORDER BY used DESC, rowid DESC) AS kept FROM chunks) "
                   "WHERE kept > ?)", (self.max_bytes * 9 // 10,))

    def _give_up(self, exc: sqlite3.DatabaseError) -> None:
        """A damaged or foreign file: chunking goes on without it."""
        log.warning("chunk cache %s is unusable (%s): chunking without it", self.path, exc)
        self.close()
        self.max_bytes = 0

    def entries(self) -> int:
        """Sections in the cache now."""
        with self._lock:
            return int(self._connect().execute("SELECT count(*) FROM chunks").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class _Batch:
    """Entries waiting for the next transaction."""

    def __init__(self) -> None:
        self.made: dict[bytes, bytes] = {}
        self.used: list[bytes] = []

    def __len__(self) -> int:
        return len(self.made) + len(self.used)


class _Group:
    """The sections of one text (one section, or a run continued by `more`), counting
    their characters as the chunker reads them."""

    def __init__(self, sections: Iterable[Section]):
        self.sections = iter(sections)
        self.length = 0

    def __iter__(self) -> Iterator[Section]:
        for section in self.sections:
            self.length += len(section.text)
            yield section


def _continued(rest: Iterator[Section]) -> Iterator[Section]:
    """The sections after one whose `more` is set, up to the one that ends the text."""
    for section in rest:
        yield section
        if not section.more:
            return

