"""load → chunk → embed → upsert, incrementally.

Consistency: a document's chunks are written as `staged` (invisible to search), then one
filter update flips them to `live` and a second removes the previous version. Point ids
derive from (document, version, chunk), so a run killed at any moment leaves every
document either at its old version or at its new one, and the next run finishes the job
by rewriting the same ids — never a duplicate.

A file may carry documents of its own (an e-mail's attachments, a mailbox's messages). Each
becomes a child document, source `<file>#<name>`, whose payload names the file's document
id as `parent` and whose `doc_hash` is the file's version: children are written and flipped
live before their parent, the parent's commit removes children of its older versions, and
deleting or pruning the parent takes its children with it. An unchanged file's children are
left as they are; a changed file's are all re-ingested.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.errors import LoadError, RagError
from core.settings import Settings
from ingest.chunker import Chunk, Chunker
from ingest.embed_cache import CachedEmbedder, cached
from ingest.embedder import backend_label
from ingest.loaders import Attachment, LoadedDocument, LoadOptions, file_type, load
from ingest.ocr import OcrReader
from ingest.payload import ChunkPayload, manifest, point_id
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, STAGED, PointIn, Store, Where
from ingest.tokenizer import TokenCounter, load_tokenizer

Status = Literal["new", "updated", "unchanged", "failed", "skipped", "removed"]
_SCANNED_TYPES = {"pdf", "image"}  # file types whose pages OCR may read
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox"}
MAX_NESTING = 3  # a message attached to a message attached to... stops here


def document_id_for(path: Path) -> str:
    """Stable id of the document at `path` (its absolute path)."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


@dataclass
class FileResult:
    path: str
    status: Status
    reason: str = ""  # why it failed or was skipped; for an ingested file, what was cut
    document_id: str = ""
    chunks: int = 0
    tokens: int = 0
    notes: list[str] = field(default_factory=list)  # what was left out of a file that ingested
    ocr_pages: int = 0  # pages read by the OCR engine
    ocr_cached: int = 0  # pages whose OCR text came from the cache


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    embedded: int = 0  # chunks the model embedded
    cached: int = 0  # chunks whose vectors came from the embedding cache
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

    @property
    def ocr_pages(self) -> int:
        return sum(r.ocr_pages for r in self.results)

    @property
    def ocr_cached(self) -> int:
        return sum(r.ocr_cached for r in self.results)


@dataclass
class _Prepared:
    path: Path
    result: FileResult
    doc: LoadedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    version: str = ""
    file_hash: str = ""
    stat: os.stat_result | None = None
    size: int = 0
    parent: str = ""  # a child's: the document id of the file that carries it
    children: list[_Prepared] = field(default_factory=list)


class Progress:
    """What the pipeline reports while it works; the CLI draws it."""

    def start(self, total_files: int) -> None: ...

    def file_done(self, result: FileResult) -> None: ...

    def embedded(self, chunks: int) -> None: ...

    def cached(self, chunks: int) -> None:
        """Of the chunks just reported embedded, `chunks` came from the embedding cache."""

    def found(self, documents: int) -> None:
        """`documents` more to report than files given: attachments, a mailbox's messages."""

    def ocr_page(self, path: str, done: int, pages: int) -> None:
        """OCR of `path` has read `done` of its `pages` to read: called before the first
        page and after each (on the parse thread)."""


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
        self._embedder: CachedEmbedder | None = (
            None if embedder is None else cached(embedder, settings))
        self.counter = counter or load_tokenizer(settings.tokenizer.path)
        self.chunker = Chunker(self.counter, settings.chunking.size, settings.chunking.overlap)
        self.load_options = LoadOptions(max_sheet_rows=settings.ingest.max_sheet_rows,
                                        max_unzipped_mb=settings.ingest.max_unzipped_mb)
        self.sparse = SparseEncoder()
        self.ocr = OcrReader(settings.ingest, settings.data_dir / "ocr" / "pages.sqlite")
        self._collection_ready = False

    @property
    def embedder(self) -> CachedEmbedder:
        if self._embedder is None:
            from ingest.embedder import Embedder

            self._embedder = cached(Embedder(self.settings.embedding), self.settings)
        return self._embedder

    def signature(self, type_: str | None = None) -> str:
        """What besides the file's bytes decides its chunks and vectors (of a file of type
        `type_`: the OCR settings count only for the types that may hold scanned pages)."""
        s = self.settings
        sig = (f"chunk={s.chunking.size}/{s.chunking.overlap};tok={self.counter.name};"
               f"emb={s.embedding.model};long={s.embedding.long_text};"
               f"backend={backend_label(s.embedding)};rows={s.ingest.max_sheet_rows}")
        if type_ in _SCANNED_TYPES:
            sig += f";ocr={s.ingest.ocr}/{s.ingest.ocr_engine}/{s.ingest.ocr_dpi}"
        return sig

    def live_documents(self) -> dict[str, ChunkPayload]:
        live: dict[str, ChunkPayload] = {}
        for entry in manifest(self.store):
            prev = live.get(entry.document_id)
            if prev is None:
                live[entry.document_id] = entry
            elif prev.doc_hash != entry.doc_hash:
                # Two versions live: a run died between committing the new one and removing
                # the old. No hash matches, so the file is re-ingested and the commit repairs it.
                live[entry.document_id] = replace(prev, doc_hash="")
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
        hits_before = 0 if self._embedder is None else self._embedder.hits

        feed = _Background(lambda path, explicit, known: self._prepare(
            path, explicit, known, progress), files, live)
        for top in feed:
            seen.add(top.result.document_id)
            if top.children:
                progress.found(len(top.children))
            # Children first: their commits come before the parent's, so a run killed in
            # between leaves the parent at its old version, and the next run redoes them all.
            for prep in [*top.children, top]:
                result = prep.result
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
        self.ocr.close()
        if self._embedder is not None:
            report.cached = self._embedder.hits - hits_before
            report.embedded -= report.cached
            self._embedder.close()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, path: Path, explicit: bool, live: dict[str, ChunkPayload],
                 progress: Progress) -> _Prepared:
        doc_id = document_id_for(path)
        result = FileResult(str(path), "failed", document_id=doc_id)
        prep = _Prepared(path, result)
        type_ = file_type(path)
        if type_ is None:
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
        prep.size = stat.st_size
        prep.file_hash = hashlib.sha256(data).hexdigest()
        prep.version = hashlib.sha256(
            f"{prep.file_hash}|{self.signature(type_)}".encode()).hexdigest()[:32]
        old = live.get(doc_id)
        if old is not None and old.doc_hash == prep.version:
            result.status = "unchanged"
            result.chunks = int(old.doc_chunks)
            result.tokens = int(old.doc_tokens)
            return prep
        if self._load(prep, path, data, progress):
            result.status = "updated" if old is not None else "new"
            prep.children = self._children(prep, prep, 1, progress)
        return prep

    def _load(self, prep: _Prepared, path: Path, data: bytes, progress: Progress) -> bool:
        """Loads and chunks `data` into `prep`; False with the reason set when it cannot."""
        try:
            prep.doc = load(path, data, self.load_options)
            self._read_scans(prep, progress)
            prep.chunks = self.chunker.split(prep.doc.sections)
        except LoadError as exc:
            prep.result.reason = str(exc)
            return False
        except RagError:
            raise
        except Exception as exc:  # a parser bug on one odd file must not stop the batch
            prep.result.reason = (f"cannot parse: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:120]}")
            return False
        prep.result.chunks = len(prep.chunks)
        prep.result.tokens = sum(c.core_tokens for c in prep.chunks)
        return True

    def _children(self, top: _Prepared, carrier: _Prepared, depth: int,
                  progress: Progress) -> list[_Prepared]:
        """The documents `carrier` holds (and theirs, flattened), each loaded and chunked,
        or with the one-line reason it is skipped or failed."""
        assert carrier.doc is not None
        children: list[_Prepared] = []
        for attachment in carrier.doc.attachments:
            child = self._child(top, carrier, attachment, depth, progress)
            children.append(child)
            if child.doc is not None and child.doc.attachments:
                children.extend(self._children(top, child, depth + 1, progress))
        return children

    def _child(self, top: _Prepared, carrier: _Prepared, attachment: Attachment,
               depth: int, progress: Progress) -> _Prepared:
        # The source a citation shows; nothing on disk, so resolving it changes nothing.
        path = Path(f"{carrier.path.resolve()}#{attachment.name}")
        result = FileResult(f"{carrier.result.path}#{attachment.name}", "skipped",
                            document_id=document_id_for(path))
        child = _Prepared(path, result, version=top.version, stat=top.stat,
                          parent=top.result.document_id)
        limit = self.settings.ingest.max_attachment_mb
        if file_type(Path(attachment.name)) is None:
            result.reason = f"unsupported file type '{Path(attachment.name).suffix or attachment.name}'"
        elif attachment.size > limit * 2**20:
            result.reason = (f"attachment is {attachment.size / 2**20:.0f} MB, over the "
                             f"ingest.max_attachment_mb limit of {limit:g}")
        elif depth > MAX_NESTING:
            result.reason = f"nested more than {MAX_NESTING} levels deep"
        else:
            data = attachment.read()
            child.size = len(data)
            child.file_hash = hashlib.sha256(data).hexdigest()
            result.status = "failed"
            if not data:
                result.reason = "empty attachment"
            elif self._load(child, Path(attachment.name), data, progress):
                result.status = "new"
        return child

    def _read_scans(self, prep: _Prepared, progress: Progress) -> None:
        """OCR of the document's pages that have no text layer, counted on its result."""
        doc, result = prep.doc, prep.result
        assert doc is not None
        read, cached = self.ocr.pages_read, self.ocr.pages_cached
        try:
            self.ocr.read(doc, lambda n, total: progress.ocr_page(result.path, n, total))
        finally:
            result.ocr_pages = self.ocr.pages_read - read
            result.ocr_cached = self.ocr.pages_cached - cached
            result.notes = list(doc.notes)

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
        hits = self.embedder.hits
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
        progress.cached(self.embedder.hits - hits)
        if len(cache) > 50_000:
            cache.clear()
        return len(todo)

    def _payload(self, prep: _Prepared, chunk: Chunk) -> dict[str, Any]:
        doc = prep.doc
        assert doc is not None and prep.stat is not None
        return ChunkPayload(
            document_id=prep.result.document_id, source=str(prep.path.resolve()),
            title=doc.title, type=doc.type, pages=doc.pages, page=chunk.page,
            page_label=chunk.page_label, section=chunk.section, chunk_index=chunk.index,
            text=chunk.text, core_offset=chunk.core_offset, table_header=chunk.table_header,
            char_start=chunk.char_start, char_end=chunk.char_end, tokens=chunk.tokens,
            core_tokens=chunk.core_tokens, end_tokens=chunk.end_tokens, ocr=chunk.ocr,
            tokenizer=self.counter.name, content_hash=chunk.content_hash, doc_hash=prep.version,
            # Checked before a search (check_store_embedding): one backend per store.
            embedding=getattr(self.embedder, "signature", None),
            file_hash=prep.file_hash, doc_chunks=prep.result.chunks,
            doc_tokens=prep.result.tokens, size_bytes=prep.size, mtime=prep.stat.st_mtime,
            ingested_at=datetime.now(UTC).isoformat(timespec="seconds"), state=STAGED,
            parent=prep.parent or None,
        ).to_payload()

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
                if not prep.parent:
                    # Children of any other version (theirs share its doc_hash); also those
                    # of a killed run's. 0.07 ms on Edge when there are none.
                    self.store.delete(Where(equals={"parent": doc_id},
                                            not_equals={"doc_hash": prep.version}))
                del open_docs[doc_id]
                del docs[doc_id]
                report.results.append(prep.result)
                progress.file_done(prep.result)

    def _prune(self, live: dict[str, ChunkPayload], seen: set[str],
               roots: list[Path]) -> list[FileResult]:
        dirs = [str(r.resolve()) + os.sep for r in roots if r.is_dir()]
        removed = []
        for doc_id, entry in sorted(live.items()):
            if entry.parent:
                continue  # it goes with its parent
            source = entry.source
            gone = not Path(source).exists()
            under_root_unseen = doc_id not in seen and any(source.startswith(d) for d in dirs)
            if gone or under_root_unseen:
                self.store.delete(Where(equals={"document_id": doc_id}))
                self.store.delete(Where(equals={"parent": doc_id}))
                removed.append(FileResult(source, "removed", "file is gone", doc_id,
                                          int(entry.doc_chunks), int(entry.doc_tokens)))
        return removed


class _Background:
    """Parses and chunks the next files on a thread while the caller embeds; iterating
    yields each file's _Prepared in order and re-raises the thread's errors."""

    def __init__(self, prepare: Callable[[Path, bool, dict[str, ChunkPayload]], _Prepared],
                 files: list[tuple[Path, bool]], live: dict[str, ChunkPayload]):
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
