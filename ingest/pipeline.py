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

Memory stays bounded whatever the file's size: a file is hashed in blocks, a text file is
read and chunked a piece at a time (ingest/loaders/text.py, ingest/chunker.py), a PDF a page
at a time with OCR of its scanned pages as they come (ingest/loaders/pdf.py, ingest/ocr.py),
and chunks flow to the embedder through a bounded queue, so a document's chunks are written
in many batches, all staged until the last one is written; its chunk and token totals are set with
the flip to live.
"""

from __future__ import annotations

import contextvars
import errno
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from core import heap
from core.errors import LoadError, RagError
from core.settings import Settings
from ingest.chunk_cache import cached_chunker
from ingest.chunker import Chunk, Chunker
from ingest.embed_cache import CachedEmbedder, cached
from ingest.embedder import backend_label
from ingest.loaders import Attachment, LoadedDocument, LoadOptions, file_type, load, load_path
from ingest.ocr import OcrReader
from ingest.payload import ChunkPayload, manifest, point_id
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, STAGED, PointIn, Sparse, Store, Where
from ingest.tokenizer import TokenCounter, load_tokenizer

Status = Literal["new", "updated", "unchanged", "failed", "skipped", "removed"]
_SCANNED_TYPES = {"pdf", "image"}  # file types whose pages OCR may read
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox"}
MAX_NESTING = 3  # a message attached to a message attached to... stops here
_QUEUED = 1024  # chunks (and other events) the parse thread may run ahead of the embedder
_VECTORS_KEPT = 20_000  # chunk texts whose vectors a run keeps, so repeated chunks embed once
_HASH_BLOCK = 1 << 20


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
    version: str = ""
    file_hash: str = ""
    stat: os.stat_result | None = None
    size: int = 0
    parent: str = ""  # a child's: the document id of the file that carries it


@dataclass
class _Found:
    """`documents` more to report than files given (a file's attachments)."""

    documents: int


@dataclass
class _Open:
    """A document whose chunks follow (its staged leftovers are removed first)."""

    prep: _Prepared


@dataclass
class _Close:
    """A document's chunks are all cut (its result says so, or why it failed midway)."""

    prep: _Prepared


# What the parse thread sends: a finished result without chunks (unchanged, failed,
# skipped), a count of found documents, and for each document to write: _Open, its chunks,
# _Close.
_Event = _Prepared | _Found | _Open | tuple[_Prepared, Chunk] | _Close


@dataclass
class _Writing:
    """A document being written: chunks cut, and chunks upserted (staged)."""

    prep: _Prepared
    cut: int = 0
    written: int = 0
    closed: bool = False


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


def discover(paths: Iterable[Path], follow_symlinks: bool = False,
             unreadable: list[tuple[Path, OSError]] | None = None
             ) -> Iterator[tuple[Path, bool]]:
    """(file, named explicitly) for every file under `paths`, in a stable order. A folder
    that cannot be listed is added to `unreadable` with its error; a folder reached again
    through a symbolic link (a loop, when links are followed) is walked once."""
    for root in paths:
        if not root.is_dir():
            yield root, True
            continue
        walked: set[tuple[int, int]] = set()

        def failed(exc: OSError, root: Path = root) -> None:
            if unreadable is not None:
                unreadable.append((Path(exc.filename or root), exc))

        for dirpath, dirnames, filenames in os.walk(root, onerror=failed,
                                                    followlinks=follow_symlinks):
            if follow_symlinks and not _first_visit(Path(dirpath), walked):
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames
                                 if d not in _SKIP_DIRS and not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield Path(dirpath) / name, False


def _first_visit(folder: Path, walked: set[tuple[int, int]]) -> bool:
    try:
        st = folder.stat()
    except OSError:
        return True  # os.walk reports it when it lists it
    key = (st.st_dev, st.st_ino)
    if key in walked:
        return False
    walked.add(key)
    return True


def _unique(found: Iterable[tuple[Path, bool]]) -> list[tuple[Path, bool]]:
    """Each file once, however many paths lead to it; a path that cannot be resolved (a
    symbolic link loop) is kept as given: reading it fails by name."""
    files: dict[str, tuple[Path, bool]] = {}
    for path, named in found:
        try:
            key = str(path.resolve())
        except (OSError, RuntimeError):
            key = str(path)
        files.setdefault(key, (path, named))
    return list(files.values())


def _reason(exc: OSError) -> str:
    """An OSError on a path as a reason of one line."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read: {exc.strerror or exc}"


class Ingestor:
    def __init__(self, settings: Settings, store: Store, embedder: Any = None,
                 counter: TokenCounter | None = None):
        self.settings = settings
        self.store = store
        self._embedder: CachedEmbedder | None = (
            None if embedder is None else cached(embedder, settings))
        self.counter = counter or load_tokenizer(settings.tokenizer.path)
        self.chunker = cached_chunker(
            Chunker(self.counter, settings.chunking.size, settings.chunking.overlap), settings)
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
        unreadable: list[tuple[Path, OSError]] = []
        files = _unique(discover([p for p in paths if p not in missing],
                                 self.settings.ingest.follow_symlinks, unreadable))
        failures = [FileResult(str(path), "failed", "no such file or directory")
                    for path in missing]
        failures += [FileResult(str(path), "failed", f"folder: {_reason(exc)}")
                     for path, exc in unreadable]
        progress.start(len(files) + len(failures))
        for result in failures:
            report.results.append(result)
            progress.file_done(result)
        if self.store.kind == "edge":
            # One process owns the embedded store, so staged leftovers are a killed run's.
            self.store.delete(Where(equals={"state": STAGED}))
        live = self.live_documents()
        seen: set[str] = set()
        hits_before = 0 if self._embedder is None else self._embedder.hits
        try:
            self._write_all(files, live, seen, report, progress)
            if prune:
                for result in self._prune(live, seen, paths):
                    report.results.append(result)
                    progress.file_done(result)
            if report.embedded or report.count("removed"):
                self.store.optimize()
        finally:
            self.ocr.close()
            self.chunker.close()
            if self._embedder is not None:
                report.cached = self._embedder.hits - hits_before
                report.embedded -= report.cached
                self._embedder.close()
            heap.release()
        report.seconds = time.perf_counter() - started
        return report

    def _write_all(self, files: list[tuple[Path, bool]], live: dict[str, ChunkPayload],
                   seen: set[str], report: IngestReport, progress: Progress) -> None:
        """Takes the parse thread's events: chunks are embedded and upserted a batch at a
        time, and each document is committed once its last chunk is written. Children come
        before their parent, so their commits come first: a run killed in between leaves
        the parent at its old version, and the next run redoes them all."""
        feed = _Background(lambda path, explicit: self._events(path, explicit, live, progress),
                           files)
        self._drain(feed, feed.idle, seen, report, progress)

    def _drain(self, feed: Iterable[_Event], idle: Callable[[], bool], seen: set[str],
               report: IngestReport, progress: Progress) -> None:
        """Writes and commits what `feed` sends, in its order; `idle` says that nothing
        more is ready yet, so what is pending is written now."""
        pending: list[tuple[_Prepared, Chunk]] = []
        writing: dict[str, _Writing] = {}  # in the order the documents were opened
        batch = self.settings.embedding.batch_size
        cache: dict[str, tuple[Any, Sparse]] = {}
        for event in feed:
            if isinstance(event, tuple):
                pending.append(event)
                writing[event[0].result.document_id].cut += 1
            elif isinstance(event, _Open):
                doc_id = event.prep.result.document_id
                if not event.prep.parent:
                    seen.add(doc_id)
                writing[doc_id] = _Writing(event.prep)
                self.store.delete(Where(equals={"document_id": doc_id, "state": STAGED}))
            elif isinstance(event, _Close):
                pending = self._close(event.prep, writing, pending, report, progress)
            elif isinstance(event, _Found):
                progress.found(event.documents)
            else:
                if not event.parent:
                    seen.add(event.result.document_id)
                report.results.append(event.result)
                progress.file_done(event.result)
            # A full batch, or whatever is pending while the parse thread has nothing ready:
            # the model never sits idle waiting for more files to be parsed.
            while len(pending) >= batch or (pending and idle()):
                pending = self._write_batch(pending, batch, cache, writing, report, progress)
        while pending:
            pending = self._write_batch(pending, batch, cache, writing, report, progress)
        self._commit_ready(writing, report, progress)

    def _write_batch(self, pending: list[tuple[_Prepared, Chunk]], batch: int,
                     cache: dict[str, tuple[Any, Sparse]], writing: dict[str, _Writing],
                     report: IngestReport, progress: Progress) -> list[tuple[_Prepared, Chunk]]:
        """Writes the first `batch` pending chunks, commits what that finished; the rest."""
        head, rest = pending[:batch], pending[batch:]
        report.embedded += self._write(head, cache, progress)
        for prep, _ in head:
            writing[prep.result.document_id].written += 1
        self._commit_ready(writing, report, progress)
        return rest

    def _close(self, prep: _Prepared, writing: dict[str, _Writing],
               pending: list[tuple[_Prepared, Chunk]], report: IngestReport,
               progress: Progress) -> list[tuple[_Prepared, Chunk]]:
        """A document's chunks are all cut: it commits once they are written; one that
        failed midway is dropped with what it staged (its previous version stays live)."""
        doc_id = prep.result.document_id
        if prep.result.status != "failed":
            writing[doc_id].closed = True
            return pending
        del writing[doc_id]
        self.store.delete(Where(equals={"document_id": doc_id, "state": STAGED}))
        report.results.append(prep.result)
        progress.file_done(prep.result)
        return [item for item in pending if item[0] is not prep]

    def _events(self, path: Path, explicit: bool, live: dict[str, ChunkPayload],
                progress: Progress) -> Iterator[_Event]:
        """What the parse thread sends for one file (and the documents it carries)."""
        yield from self.document_events(self._prepare(path, explicit, live, progress), progress)

    def document_events(self, prep: _Prepared, progress: Progress) -> Iterator[_Event]:
        """The events of one prepared file: its result alone, or its documents' chunks."""
        if prep.doc is None:
            yield prep
            return
        children = self._children(prep, prep, 1, progress)
        if children:
            yield _Found(len(children))
        for child in children:
            if child.doc is None:
                yield child
            else:
                yield from self._chunk_events(child)
        yield from self._chunk_events(prep)

    def _chunk_events(self, prep: _Prepared) -> Iterator[_Event]:
        """_Open, the document's chunks as they are cut, _Close."""
        doc, result = prep.doc, prep.result
        assert doc is not None
        yield _Open(prep)
        result.chunks = result.tokens = 0
        read, cached = self.ocr.pages_read, self.ocr.pages_cached
        try:
            for chunk in self.chunker.stream(chain(doc.sections, doc.stream or ())):
                result.chunks += 1
                result.tokens += chunk.core_tokens
                yield prep, chunk
            # A streamed PDF's pages are read by OCR as they are chunked.
            result.ocr_pages += self.ocr.pages_read - read
            result.ocr_cached += self.ocr.pages_cached - cached
            result.notes = list(doc.notes)
        except OSError as exc:
            _fail(result, _reason(exc))
        except LoadError as exc:
            _fail(result, str(exc))
        except RagError:
            raise
        except Exception as exc:  # a parser bug on one odd file must not stop the batch
            _fail(result, _parse_failure(exc))
        finally:
            doc.close()  # a stream left midway (a failure, a stopped run) closes its file
        doc.sections = []
        yield _Close(prep)

    def _prepare(self, path: Path, explicit: bool, live: dict[str, ChunkPayload],
                 progress: Progress) -> _Prepared:
        """The file's _Prepared: with its document opened for chunking (`doc`), or with
        the result that needs no chunks (unchanged, skipped, failed)."""
        prep, status = self.check(path, explicit, live)
        if status is not None and self.load_file(prep, progress):
            prep.result.status = status
        return prep

    def check(self, path: Path, explicit: bool, live: dict[str, ChunkPayload]
              ) -> tuple[_Prepared, Status | None]:
        """What the file's bytes and the store decide before it is read: the _Prepared,
        hashed, and the status it takes once loaded ("new" or "updated"), or None with its
        result final (unchanged, skipped, failed)."""
        doc_id = _document_id_or_path(path)
        result = FileResult(str(path), "failed", document_id=doc_id)
        prep = _Prepared(path, result)
        type_ = file_type(path)
        try:
            stat = path.stat()
        except OSError as exc:
            if type_ is not None or exc.errno == errno.ELOOP:
                result.reason = _reason(exc)
                return prep, None
            stat = None
        if type_ is None:
            result.reason = f"unsupported file type '{path.suffix or path.name}'"
            if not explicit:
                result.status = "skipped"
            return prep, None
        assert stat is not None
        if not path.is_file():
            result.reason = "not a regular file"
            return prep, None
        limit = self.settings.ingest.max_file_mb * 1024 * 1024
        if stat.st_size > limit:
            result.reason = (f"file is {stat.st_size / 2**20:.0f} MB, over the "
                             f"ingest.max_file_mb limit of {self.settings.ingest.max_file_mb:g}")
            return prep, None
        try:
            prep.file_hash = _file_hash(path)
        except OSError as exc:
            result.reason = _reason(exc)
            return prep, None
        prep.stat = stat
        prep.size = stat.st_size
        prep.version = hashlib.sha256(
            f"{prep.file_hash}|{self.signature(type_)}".encode()).hexdigest()[:32]
        old = live.get(doc_id)
        if old is not None and old.doc_hash == prep.version:
            result.status = "unchanged"
            result.chunks = int(old.doc_chunks)
            result.tokens = int(old.doc_tokens)
            return prep, None
        return prep, "updated" if old is not None else "new"

    def load_file(self, prep: _Prepared, progress: Progress) -> bool:
        """Loads a checked file into `prep` (see _load)."""
        return self._load(prep, lambda: load_path(prep.path, self.load_options), progress)

    def _load(self, prep: _Prepared, loader: Callable[[], LoadedDocument],
              progress: Progress) -> bool:
        """Loads the document into `prep` (its text may still be streaming in) and reads
        its scans; False with the reason set when it cannot."""
        try:
            prep.doc = loader()
            self._read_scans(prep, progress)
        except OSError as exc:
            prep.result.reason = _reason(exc)
        except LoadError as exc:
            prep.result.reason = str(exc)
        except RagError:
            raise
        except Exception as exc:  # a parser bug on one odd file must not stop the batch
            prep.result.reason = _parse_failure(exc)
        else:
            return True
        if prep.doc is not None:
            prep.doc.close()  # a stream not started: its file closes now
        prep.doc = None
        return False

    def _children(self, top: _Prepared, carrier: _Prepared, depth: int,
                  progress: Progress) -> list[_Prepared]:
        """The documents `carrier` holds (and theirs, flattened), each loaded, or with the
        one-line reason it is skipped or failed."""
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
            elif self._load(child, lambda: load(Path(attachment.name), data, self.load_options),
                            progress):
                result.status = "new"
        return child

    def _read_scans(self, prep: _Prepared, progress: Progress) -> None:
        """OCR of the document's pages that have no text layer, counted on its result."""
        doc, result = prep.doc, prep.result
        assert doc is not None
        if doc.stream is not None:
            if doc.render is not None:  # a PDF's pages: read as they are chunked
                doc.stream = self.ocr.stream(
                    doc, lambda n, total: progress.ocr_page(result.path, n, total))
            return
        read, cached = self.ocr.pages_read, self.ocr.pages_cached
        try:
            self.ocr.read(doc, lambda n, total: progress.ocr_page(result.path, n, total))
        finally:
            result.ocr_pages = self.ocr.pages_read - read
            result.ocr_cached = self.ocr.pages_cached - cached
            result.notes = list(doc.notes)

    def _write(self, items: list[tuple[_Prepared, Chunk]],
               cache: dict[str, tuple[Any, Sparse]], progress: Progress) -> int:
        """Embeds what is not cached yet and upserts the batch as staged points."""
        keys = [hashlib.sha256(c.text.encode()).hexdigest() for _, c in items]
        todo = sorted({k: c.text for k, (_, c) in zip(keys, items, strict=True)
                       if k not in cache}.items())
        if not self._collection_ready:
            # Only now: an all-unchanged run never loads the embedding model.
            self.store.ensure_collection(self.embedder.dim)
            self._collection_ready = True
        hits = self.embedder.hits
        if len(cache) + len(todo) > _VECTORS_KEPT:  # bounded: keep only what this batch reuses
            reused = {k: cache[k] for k in keys if k in cache}
            cache.clear()
            cache.update(reused)
        if todo:
            vectors = self.embedder.embed([text for _, text in todo])
            for (key, text), vec in zip(todo, vectors, strict=True):
                cache[key] = (vec, self.sparse.document(text))
        points = []
        for key, (prep, chunk) in zip(keys, items, strict=True):
            dense, sparse = cache[key]
            points.append(PointIn(point_id(prep.result.document_id, prep.version, chunk.index),
                                  dense.tolist(), sparse, self._payload(prep, chunk)))
        self.store.upsert(points)
        progress.embedded(len(todo))
        progress.cached(self.embedder.hits - hits)
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
            # The totals are known once the last chunk is cut: set when the document commits.
            file_hash=prep.file_hash, doc_chunks=0, doc_tokens=0, size_bytes=prep.size,
            mtime=prep.stat.st_mtime,
            ingested_at=datetime.now(UTC).isoformat(timespec="seconds"), state=STAGED,
            parent=prep.parent or None,
        ).to_payload()

    def _commit_ready(self, writing: dict[str, _Writing], report: IngestReport,
                      progress: Progress) -> None:
        """Commits each document whose chunks are all cut and written, in the order they
        were opened: one filter update flips its version live with its totals, then the
        previous version (and a top file's children of other versions) is removed."""
        for doc_id, doc in list(writing.items()):
            if not doc.closed or doc.written < doc.cut:
                continue
            prep = doc.prep
            self.store.set_payload(Where(equals={"document_id": doc_id,
                                                 "doc_hash": prep.version}),
                                   {"state": LIVE, "doc_chunks": prep.result.chunks,
                                    "doc_tokens": prep.result.tokens})
            self.store.delete(Where(equals={"document_id": doc_id},
                                    not_equals={"doc_hash": prep.version}))
            if not prep.parent:
                # Children of any other version (theirs share its doc_hash); also those
                # of a killed run's. 0.07 ms on Edge when there are none.
                self.store.delete(Where(equals={"parent": doc_id},
                                        not_equals={"doc_hash": prep.version}))
            del writing[doc_id]
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
    yields each file's events in order and re-raises the thread's errors. The queue holds
    at most _QUEUED events, so the thread never runs far ahead of the embedder."""

    def __init__(self, events: Callable[[Path, bool], Iterator[_Event]],
                 files: list[tuple[Path, bool]]):
        self._out: queue.Queue[_Event | BaseException | None] = queue.Queue(maxsize=_QUEUED)
        self._stop = threading.Event()

        def work() -> None:
            try:
                for path, explicit in files:
                    for event in events(path, explicit):
                        if self._stop.is_set():
                            return
                        self._out.put(event)
            except BaseException as exc:  # surfaced in the caller's thread
                self._out.put(exc)
                return
            self._out.put(None)

        # The caller's context goes along, so the parse thread's spans (rag.parse) belong to
        # the caller's trace (rag.ingest).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                                        name="ingest-parse", daemon=True)

    def idle(self) -> bool:
        """True while the next event is still being made (nothing ready to take)."""
        return self._out.empty()

    def __iter__(self) -> Iterator[_Event]:
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


def _fail(result: FileResult, reason: str) -> None:
    result.status, result.reason = "failed", reason


def _parse_failure(exc: Exception) -> str:
    return f"cannot parse: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _document_id_or_path(path: Path) -> str:
    """document_id_for(path), or for a path that cannot be resolved (a symbolic link
    loop) the id of the path as given: it fails by name and is stored nowhere."""
    try:
        return document_id_for(path)
    except (OSError, RuntimeError):
        return hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:16]


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
