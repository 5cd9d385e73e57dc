"""Dense vectors kept by what decides them: the chunk's text and the embedder's signature
(backend, quantization, model content hash, windowing). An edited document re-embeds only
the chunks whose text changed; a copied file or a re-ingest into another collection embeds
nothing twice.

One SQLite file under the data dir, bounded (`embedding.cache_mb`): past the bound the least
recently used tenth is dropped. Each `embed` call writes its new vectors, their keys and
their last use in one transaction, and a key is the hash of the very text its vector was
made from, so a run killed at any moment leaves either the whole call's rows or none of
them, never a vector under another text's key. The cache is written before the store's
upsert: a run killed between the two finds the vectors on its rerun; a run killed before
the cache write embeds them again. Either way a vector in the cache is the embedder's own.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from core.settings import Settings

log = logging.getLogger(__name__)

_ROW_OVERHEAD = 120  # bytes per row besides the vector: key, its index entry, clock, page slack
_BATCH = 500  # keys per SELECT (SQLite's bound on parameters)


def open_cache_db(path: Path, table: str) -> sqlite3.Connection:
    """A cache's SQLite file, made with `table` ("name (columns)") when new: autocommit
    (callers open their own transactions), WAL so a reader never waits for a writer, and
    synchronous=NORMAL, with which a killed process loses no commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"CREATE TABLE IF NOT EXISTS {table}")
    return db


def cache_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "embeddings" / "vectors.sqlite"


def cached(embedder: Any, settings: Settings) -> CachedEmbedder:
    """`embedder` behind the cache `settings` configure (off when embedding.cache_mb is 0)."""
    return CachedEmbedder(embedder, cache_path(settings), settings.embedding.cache_mb,
                          settings.embedding.long_text)


class CachedEmbedder:
    """The embedder's interface (`embed`, `embed_query`, `dim`, `signature`, ...) with
    `embed` answered from the cache where it can. `hits` counts texts found in the cache,
    `misses` texts the embedder computed."""

    def __init__(self, embedder: Any, path: Path, max_mb: float, long_text: str = "window"):
        self.inner = embedder
        self.path = path
        self.hits = 0
        self.misses = 0
        signature = getattr(embedder, "signature", None)
        # Windowing decides a long text's vector as much as the model does.
        pieces = (f"{getattr(embedder, 'max_pieces', '')}/"
                  f"{getattr(embedder, 'window_overlap', '')}")
        self.key_prefix = f"{signature}|long={long_text}|pieces={pieces}|pool=mean|"
        self.max_bytes = int(max_mb * 2**20) if signature else 0
        self._capacity: int | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @property
    def capacity(self) -> int:
        """Most vectors kept (0: the cache is off)."""
        if self._capacity is None:
            self._capacity = self.max_bytes and self.max_bytes // (4 * self.dim + _ROW_OVERHEAD)
        return self._capacity

    @property
    def signature(self) -> Any:
        return getattr(self.inner, "signature", None)

    def key(self, text: str) -> bytes:
        return hashlib.sha256((self.key_prefix + text).encode()).digest()

    def embed_query(self, text: str) -> list[float]:
        return list(self.inner.embed_query(text))

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not self.capacity or not texts:
            self.misses += len(texts)
            return np.asarray(self.inner.embed(texts), dtype=np.float32)
        keys = [self.key(t) for t in texts]
        try:
            with self._lock:
                found = self._lookup(set(keys))
                todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
                made = self._compute(todo)
                self._remember(made, list(found))
        except sqlite3.DatabaseError as exc:  # a damaged or foreign file: go on without it
            log.warning("embedding cache %s is unusable (%s): embedding without it", self.path, exc)
            self.close()
            self._capacity = 0
            return self.embed(texts)
        hits = sum(1 for k in keys if k in found)
        self.hits += hits
        self.misses += len(keys) - hits
        vectors = {**found, **made}
        return np.stack([vectors[k] for k in keys])

    def _compute(self, todo: dict[bytes, str]) -> dict[bytes, np.ndarray]:
        import numpy as np

        if not todo:
            return {}
        vectors = np.asarray(self.inner.embed(list(todo.values())), dtype=np.float32)
        if vectors.shape != (len(todo), self.dim):
            raise ValueError(f"the embedder returned {vectors.shape} for {len(todo)} texts")
        return dict(zip(todo, vectors, strict=True))

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_cache_db(self.path, "vectors (key BLOB PRIMARY KEY, "
                                     "vector BLOB NOT NULL, used INTEGER NOT NULL)")
        return self._db

    def _lookup(self, keys: set[bytes]) -> dict[bytes, np.ndarray]:
        import numpy as np

        db = self._connect()
        wanted = list(keys)
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(wanted), _BATCH):
            part = wanted[start:start + _BATCH]
            rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN "
                              f"({','.join('?' * len(part))})", part).fetchall()
            for key, blob in rows:
                if len(blob) == 4 * self.dim:  # else a miss, overwritten below
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _remember(self, made: dict[bytes, np.ndarray], used: list[bytes]) -> None:
        """New vectors stored and found ones marked used, in one transaction; then, past
        the bound, the least recently used tenth dropped."""
        db = self._connect()
        now = time.time_ns()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                           [(k, v.astype("<f4").tobytes(), now) for k, v in made.items()])
            db.executemany("UPDATE vectors SET used = ? WHERE key = ?", [(now, k) for k in used])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if made:
            self._evict(db)

    def _evict(self, db: sqlite3.Connection) -> None:
        (rows,) = db.execute("SELECT count(*) FROM vectors").fetchone()
        if rows <= self.capacity:
            return
        drop = rows - self.capacity + self.capacity // 10
        db.execute("DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors "
                   "ORDER BY used, rowid LIMIT ?)", (drop,))

    def entries(self) -> int:
        """Vectors in the cache now."""
        if not self.capacity:
            return 0
        with self._lock:
            return int(self._connect().execute("SELECT count(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
