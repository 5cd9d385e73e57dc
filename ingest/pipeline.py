"""load → chunk → embed → upsert, incrementally.

Consistency: a document's chunks are written as `staged` (invisible to search), then one
filter update flips them to `live` and a second removes the previous version. Point ids
derive from (document, version, chunk), so a run killed at any moment leaves every
document either at its old version or at its new one, and the next run finishes the job
by rewriting the same ids — never a duplicate.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.errors import LoadError, RagError
from core.settings import Settings
from ingest.chunker import Chunk, Chunker
from ingest.embedder import backend_label
from ingest.loaders import LoadedDocument, file_type, load
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, STAGED, PointIn, Store, Where
from ingest.tokenizer import TokenCounter, load_tokenizer

Status = Literal["new", "updated", "unchanged", "failed", "skipped", "removed"]
_POINT_NS = uuid.UUID("6f1c52a4-3c1e-4a8e-9a57-1d1f0f1c5e11")
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox"}


def document_id_for(path: Path) -> str:
    """Stable id of the document at `path` (its absolute path)."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def point_id(document_id: str, version: str, index: int) -> str:
    return str(uuid.uuid5(_POINT_NS, f"{document_id}:{version}:{index}"))


@dataclass
class FileResult:
    path: str
    status: Status
    reason: str = ""
    document_id: str = ""
    chunks: int = 0
    tokens: int = 0


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.results if r.status in ("new", "updated"))

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results if r.status in ("new", "updated"))


@dataclass
class _Prepared:
    path: Path
    result: FileResult
    doc: LoadedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    version: str = ""
    file_hash: str = ""
    stat: os.stat_result | None = None


class Progress:
    """What the pipeline reports while it works; the CLI draws it."""

    def start(self, total_files: int) -> None: ...

    def file_done(self, result: FileResult) -> None: ...

    def embedded(self, chunks: int) -> None: ...


def discover(paths: Iterable[Path], follow_symlinks: bool = False) -> Iterator[tuple[Path, bool]]:
    """(file, named explicitly) for every file under `paths`, in a stable order."""
    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
                dirnames[:] = sorted(d for d in dirnames
                                     if d not in _SKIP_DIRS and not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        yield Path(dirpath) / name, False
        else:
            yield root, True


class Ingestor:
    def __init__(self, settings: Settings, store: Store, embedder: Any = None,
                 counter: TokenCounter | None = None):
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self.counter = counter or load_tokenizer(settings.tokenizer.path)
        self.chunker = Chunker(self.counter, settings.chunking.size, settings.chunking.overlap)
        self.sparse = SparseEncoder()
        self._collection_ready = False

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from ingest.embedder import Embedder

            self._embedder = Embedder(self.settings.embedding)
        return self._embedder

    def signature(self) -> str:
        """What besides the file's bytes decides its chunks and vectors."""
        s = self.settings
        return (f"chunk={s.chunking.size}/{s.chunking.overlap};tok={self.counter.name};"
                f"emb={s.embedding.model};long={s.embedding.long_text};"
                f"backend={backend_label(s.embedding)}")

    def live_documents(self) -> dict[str, dict[str, Any]]:
        where = Where(equals={"chunk_index": 0, "state": LIVE})
        live: dict[str, dict[str, Any]] = {}
        for p in self.store.scroll(where):
            doc_id = p.payload["document_id"]
            prev = live.get(doc_id)
            if prev is None:
                live[doc_id] = p.payload
            elif prev.get("doc_hash") != p.payload.get("doc_hash"):
                # Two versions live: a run died between committing the new one and removing
                # the old. No hash matches, so the file is re-ingested and the commit repairs it.
                live[doc_id] = {**prev, "doc_hash": None}
        return live

    def run(self, paths: list[Path], prune: bool = False,
            progress: Progress | None = None) -> IngestReport:
        progress = progress or Progress()
        started = time.perf_counter()
        report = IngestReport()
        missing = [p for p in paths if not p.exists() and not p.is_symlink()]
        files = list({p.resolve(): (p, named) for p, named in discover(
            [p for p in paths if p not in missing], self.settings.ingest.follow_symlinks)
        }.values())
        progress.start(len(files) + len(missing))
        for path in missing:
            result = FileResult(str(path), "failed", "no such file or directory")
            report.results.append(result)
            progress.file_done(result)
        if self.store.kind == "edge":
            # One process owns the embedded store, so staged leftovers are a killed run's.
            self.store.delete(Where(equals={"state": STAGED}))
        live = self.live_documents()
        pending: list[tuple[_Prepared, Chunk]] = []
        open_docs: dict[str, list[int]] = {}  # document_id -> [chunks left to write]
        docs: dict[str, _Prepared] = {}
        seen: set[str] = set()
        batch = self.settings.embedding.batch_size
        cache: dict[str, tuple[list[float], Any]] = {}

        feed = _Background(self._prepare, files, live)
        for prep in feed:
            result = prep.result
            seen.add(result.document_id)
            if prep.chunks:
                docs[result.document_id] = prep
                open_docs[result.document_id] = [len(prep.chunks)]
                self.store.delete(Where(equals={"document_id": result.document_id,
                                                "state": STAGED}))
                pending.extend((prep, c) for c in prep.chunks)
            else:
                report.results.append(result)
                progress.file_done(result)
            # A full batch, or whatever is pending while the parse thread has nothing ready:
            # the model never sits idle waiting for more files to be parsed.
            while len(pending) >= batch or (pending and feed.idle()):
                head, pending = pending[:batch], pending[batch:]
                report.embedded += self._write(head, cache, progress)
                self._commit_finished(head, open_docs, docs, report, progress)
        while pending:
            head, pending = pending[:batch], pending[batch:]
            report.embedded += self._write(head, cache, progress)
            self._commit_finished(head, open_docs, docs, report, progress)

        if prune:
            for result in self._prune(live, seen, paths):
                report.results.append(result)
                progress.file_done(result)
        if report.embedded or report.count("removed"):
            self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, path: Path, explicit: bool, live: dict[str, dict[str, Any]]) -> _Prepared:
        doc_id = document_id_for(path)
        result = FileResult(str(path), "failed", document_id=doc_id)
        prep = _Prepared(path, result)
        if file_type(path) is None:
            result.reason = f"unsupported file type '{path.suffix or path.name}'"
            if not explicit:
                result.status = "skipped"
            return prep
        try:
            stat = path.stat()
            if not path.is_file():
                result.reason = "not a regular file"
                return prep
            limit = self.settings.ingest.max_file_mb * 1024 * 1024
            if stat.st_size > limit:
                result.reason = (f"file is {stat.st_size / 2**20:.0f} MB, over the "
                                 f"ingest.max_file_mb limit of {self.settings.ingest.max_file_mb:g}")
                return prep
            data = path.read_bytes()
        except PermissionError:
            result.reason = "permission denied"
            return prep
        except OSError as exc:
            result.reason = f"cannot read: {exc.strerror or exc}"
            return prep
        prep.stat = stat
        prep.file_hash = hashlib.sha256(data).hexdigest()
        prep.version = hashlib.sha256(
            f"{prep.file_hash}|{self.signature()}".encode()).hexdigest()[:32]
        old = live.get(doc_id)
        if old is not None and old.get("doc_hash") == prep.version:
            result.status = "unchanged"
            result.chunks = int(old.get("doc_chunks", 0))
            result.tokens = int(old.get("doc_tokens", 0))
            return prep
        try:
            prep.doc = load(path, data)
            prep.chunks = self.chunker.split(prep.doc.sections)
        except LoadError as exc:
            result.reason = str(exc)
            return prep
        except RagError:
            raise
        except Exception as exc:  # a parser bug on one odd file must not stop the batch
            result.reason = f"cannot parse: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
            return prep
        result.status = "updated" if old is not None else "new"
        result.chunks = len(prep.chunks)
        result.tokens = sum(c.core_tokens for c in prep.chunks)
        return prep

    def _write(self, items: list[tuple[_Prepared, Chunk]],
               cache: dict[str, tuple[list[float], Any]], progress: Progress) -> int:
        """Embeds what is not cached yet and upserts the batch as staged points."""
        keys = [hashlib.sha256(c.text.encode()).hexdigest() for _, c in items]
        todo = sorted({k: c.text for k, (_, c) in zip(keys, items, strict=True)
                       if k not in cache}.items())
        if not self._collection_ready:
            # Only now: an all-unchanged run never loads the embedding model.
            self.store.ensure_collection(self.embedder.dim)
            self._collection_ready = True
        if todo:
            vectors = self.embedder.embed([text for _, text in todo])
            for (key, text), vec in zip(todo, vectors, strict=True):
                cache[key] = (vec.tolist(), self.sparse.document(text))
        points = []
        for key, (prep, chunk) in zip(keys, items, strict=True):
            dense, sparse = cache[key]
            points.append(PointIn(point_id(prep.result.document_id, prep.version, chunk.index),
                                  dense, sparse, self._payload(prep, chunk)))
        self.store.upsert(points)
        progress.embedded(len(todo))
        if len(cache) > 50_000:
            cache.clear()
        return len(todo)

    def _payload(self, prep: _Prepared, chunk: Chunk) -> dict[str, Any]:
        doc = prep.doc
        assert doc is not None and prep.stat is not None
        return {
            "document_id": prep.result.document_id,
            "source": str(prep.path.resolve()),
            "title": doc.title,
            "type": doc.type,
            "pages": doc.pages,
            "page": chunk.page,
            "section": chunk.section,
            "chunk_index": chunk.index,
            "text": chunk.text,
            "core_offset": chunk.core_offset,
            "char_start": chunk.char_start,
            "char_end": chunk.char_end,
            "tokens": chunk.tokens,
            "core_tokens": chunk.core_tokens,
            "end_tokens": chunk.end_tokens,
            "tokenizer": self.counter.name,
            # Checked before a search (check_store_embedding): one backend per store.
            "embedding": getattr(self.embedder, "signature", None),
            "content_hash": chunk.content_hash,
            "doc_hash": prep.version,
            "file_hash": prep.file_hash,
            "doc_chunks": prep.result.chunks,
            "doc_tokens": prep.result.tokens,
            "size_bytes": prep.stat.st_size,
            "mtime": prep.stat.st_mtime,
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "state": STAGED,
        }

    def _commit_finished(self, items: list[tuple[_Prepared, Chunk]],
                         open_docs: dict[str, list[int]], docs: dict[str, _Prepared],
                         report: IngestReport, progress: Progress) -> None:
        for prep, _ in items:
            doc_id = prep.result.document_id
            left = open_docs[doc_id]
            left[0] -= 1
            if left[0] == 0:
                self.store.set_payload(Where(equals={"document_id": doc_id,
                                                     "doc_hash": prep.version}), {"state": LIVE})
                self.store.delete(Where(equals={"document_id": doc_id},
                                        not_equals={"doc_hash": prep.version}))
                del open_docs[doc_id]
                del docs[doc_id]
                report.results.append(prep.result)
                progress.file_done(prep.result)

    def _prune(self, live: dict[str, dict[str, Any]], seen: set[str],
               roots: list[Path]) -> list[FileResult]:
        dirs = [str(r.resolve()) + os.sep for r in roots if r.is_dir()]
        removed = []
        for doc_id, payload in sorted(live.items()):
            source = str(payload.get("source", ""))
            gone = not Path(source).exists()
            under_root_unseen = doc_id not in seen and any(source.startswith(d) for d in dirs)
            if gone or under_root_unseen:
                self.store.delete(Where(equals={"document_id": doc_id}))
                removed.append(FileResult(source, "removed", "file is gone", doc_id,
                                          int(payload.get("doc_chunks", 0)),
                                          int(payload.get("doc_tokens", 0))))
        return removed


class _Background:
    """Parses and chunks the next files on a thread while the caller embeds; iterating
    yields each file's _Prepared in order and re-raises the thread's errors."""

    def __init__(self, prepare: Callable[[Path, bool, dict[str, dict[str, Any]]], _Prepared],
                 files: list[tuple[Path, bool]], live: dict[str, dict[str, Any]]):
        self._out: queue.Queue[_Prepared | BaseException | None] = queue.Queue(maxsize=8)
        self._stop = threading.Event()

        def work() -> None:
            try:
                for path, explicit in files:
                    if self._stop.is_set():
                        return
                    self._out.put(prepare(path, explicit, live))
            except BaseException as exc:  # surfaced in the caller's thread
                self._out.put(exc)
                return
            self._out.put(None)

        self._thread = threading.Thread(target=work, name="ingest-parse", daemon=True)

    def idle(self) -> bool:
        """True while the next file is still being parsed (nothing ready to take)."""
        return self._out.empty()

    def __iter__(self) -> Iterator[_Prepared]:
        self._thread.start()
        try:
            while True:
                item = self._out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    self._out.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)


def ingest(settings: Settings, paths: list[Path], prune: bool = False,
           progress: Progress | None = None, store: Store | None = None,
           embedder: Any = None) -> IngestReport:
    """Opens the configured store (unless given), ingests `paths`, closes what it opened."""
    from ingest.store import open_store

    owned = store is None
    store = store or open_store(settings)
    try:
        return Ingestor(settings, store, embedder).run(paths, prune=prune, progress=progress)
    finally:
        if owned:
            store.close()


ProgressFactory = Callable[[], Progress]
