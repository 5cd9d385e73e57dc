"""Small helpers the benchmarks share: settings for a scratch store, an embedder that embeds
each distinct text once (and can keep its vectors on disk between runs), a quiet progress
reporter, table printing and the results file."""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# The one sys.path entry of the benchmarks: each script (run as `python bench/x.py`, bench/ first
# on sys.path) imports this module first, and the project's packages come from this checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _format import parse_tokens, short_tokens, table, write_results  # noqa: E402,F401

from ingest.pipeline import FileResult, Progress  # noqa: E402


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def bench_settings(work: Path, collection: str, **retrieval: Any) -> Any:
    """The project's settings (env and rag.yaml apply as usual) with the store under `work`."""
    from core.settings import load_settings

    return load_settings(data_dir=work, store={"url": None, "collection": collection},
                         retrieval=retrieval)


class CachingEmbedder:
    """Wraps the project's Embedder: each distinct text is embedded once per process, and,
    with `cache_dir`, once across runs (vectors kept as .npy beside a .json of text hashes).

    Query embeddings go straight to the model (so measured latencies include them) unless
    `memo_queries` is set, which remembers them too (for runs that repeat questions)."""

    def __init__(self, settings: Any, cache_dir: Path | None = None, memo_queries: bool = False):
        from ingest.embedder import Embedder

        self.inner = Embedder(settings.embedding)
        self.dim = self.inner.dim
        self.name = f"{self.inner.name}-{self.inner.signature.replace('/', '-')}"
        if self.inner.long_text != "truncate":  # vectors differ by mode: cached apart
            self.name += f"-{self.inner.long_text}"
        self.batch_size = self.inner.batch_size
        self.memo_queries = memo_queries
        self._queries: dict[str, list[float]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self.embedded = 0  # texts actually sent to the model
        self.seconds = 0.0
        self._dirty = False
        self._files = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            stem = cache_dir / f"embeddings-{self.name}"
            self._files = (stem.with_suffix(".json"), stem.with_suffix(".npy"))
            keys_file, vec_file = self._files
            if keys_file.is_file() and vec_file.is_file():
                keys = json.loads(keys_file.read_text())
                vecs = np.load(vec_file)
                if len(keys) == len(vecs) and vecs.shape[1:] == (self.dim,):
                    self._vectors = dict(zip(keys, vecs, strict=True))

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\x00{text}".encode()).hexdigest()

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._vectors}
        if todo:
            started = time.perf_counter()
            vecs = self.inner.embed(list(todo.values()))
            self.seconds += time.perf_counter() - started
            self.embedded += len(todo)
            self._vectors.update(zip(todo.keys(), np.asarray(vecs, dtype=np.float32), strict=True))
            self._dirty = True
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, self.dim))

    def embed_query(self, text: str) -> list[float]:
        if not self.memo_queries:
            return self.inner.embed_query(text)
        if text not in self._queries:
            self._queries[text] = self.inner.embed_query(text)
        return self._queries[text]

    def remember_queries(self, texts: list[str]) -> None:
        """Embeds many questions in batches up front (memo_queries only)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if todo:
            for t, v in zip(todo, self.inner.embed(todo), strict=True):
                self._queries[t] = v.tolist()

    def save(self) -> None:
        if self._files is None or not self._dirty:
            return
        keys_file, vec_file = self._files
        keys = list(self._vectors)
        np.save(vec_file, np.stack([self._vectors[k] for k in keys]))
        keys_file.write_text(json.dumps(keys))
        self._dirty = False


class Reporter(Progress):
    """One stderr line every `every` seconds while ingesting."""

    def __init__(self, label: str, every: float = 10.0):
        self.label = label
        self.every = every
        self.total = 0
        self.done = 0
        self.chunks = 0
        self._last = time.monotonic()

    def start(self, total_files: int) -> None:
        self.total = total_files

    def file_done(self, result: FileResult) -> None:
        self.done += 1
        self._tick()

    def embedded(self, chunks: int) -> None:
        self.chunks += chunks
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log(f"  {self.label}: {self.done:,}/{self.total:,} files, {self.chunks:,} chunks embedded")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_if_changed(path: Path, text: str) -> bool:
    """Writes `text` unless the file already holds exactly it (keeps reruns incremental)."""
    data = text.encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000 if seconds else float("nan")


def p95_ms(seconds: Sequence[float]) -> float:
    if not seconds:
        return float("nan")
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


def environment() -> dict[str, Any]:
    import os
    import platform

    import torch

    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
