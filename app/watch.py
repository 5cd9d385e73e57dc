"""`rag ingest --watch`: keeps the store in step with folders as their files change.

Each burst of changes (watchfiles groups them) becomes one sync: every changed path that
exists is ingested (unchanged bytes are skipped by hash), every one that is gone has its
documents removed. A move is both at once, in that order: the new path's chunks are the old
ones' text, so the embedding cache gives every vector back and nothing is embedded again;
the old path is removed only once the new one is stored. One line is printed per change."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from app.terminal import printable
from core.errors import RagError, SettingsError
from core.settings import Settings
from ingest.documents import delete_document
from ingest.loaders import file_type
from ingest.payload import ChunkPayload, manifest
from ingest.pipeline import IngestReport, document_id_for
from ingest.pipeline import ingest as run_ingest
from ingest.store import Store

# watchfiles yields once the folders have been quiet for STEP_MS (a burst of saves is one
# sync), and at the latest DEBOUNCE_MS after the first change of a burst.
STEP_MS = 300
DEBOUNCE_MS = 2000


@dataclass
class Sync:
    """What one burst of changes asks for: paths to ingest, paths whose documents go."""

    ingest: list[Path] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)


def plan(changed: Iterable[str]) -> Sync:
    """The sync for the changed paths, by what is on disk now (an editor's save may delete
    and re-create a file within one burst): files of supported types and folders that exist
    are ingested, paths that are gone are removed; hidden names are left alone."""
    sync = Sync()
    for raw in sorted(set(changed)):
        path = Path(raw)
        if path.name.startswith("."):
            continue
        if path.is_dir() or (path.is_file() and file_type(path) is not None):
            sync.ingest.append(path)
        elif not path.exists():
            sync.remove.append(path)
    return sync


def documents(store: Store) -> dict[str, ChunkPayload]:
    """The stored documents by id (their first chunks), attachments left out: they go
    with the document that carries them."""
    return {e.document_id: e for e in manifest(store) if not e.parent}


def gone_documents(docs: Iterable[ChunkPayload], removed: list[Path]) -> list[ChunkPayload]:
    """The documents at the removed paths or under them."""
    ids = {document_id_for(p) for p in removed}
    folders = tuple(str(p.absolute()) + os.sep for p in removed)
    return [d for d in docs if d.document_id in ids or d.source.startswith(folders)]


def moves(gone: list[ChunkPayload], arrived: list[ChunkPayload]) -> dict[str, ChunkPayload]:
    """old document id -> the document that arrived with the same bytes (same version
    hash) under a new path: a move, not a deletion and a new file."""
    by_version = {d.doc_hash: d for d in arrived}
    return {old.document_id: by_version[old.doc_hash] for old in gone
            if old.doc_hash in by_version}


class Watcher:
    """Runs the syncs on one open store with one loaded embedder, printing a line each."""

    def __init__(self, settings: Settings, store: Store, embedder: Any, out: Console,
                 err: Console):
        self.settings, self.store, self.embedder = settings, store, embedder
        self.out, self.err = out, err

    def apply(self, sync: Sync) -> None:
        """Ingests, then removes; a store error is one line and the next burst tries again."""
        try:
            before = documents(self.store)
            report = None
            if sync.ingest:
                report = run_ingest(self.settings, sync.ingest, store=self.store,
                                    embedder=self.embedder)
            gone = gone_documents(before.values(), sync.remove)
            for doc in gone:
                delete_document(self.store, doc.document_id)
        except RagError as exc:
            self._line(self.err, f"error: {exc}")
            return
        self._print(report, gone)

    def _print(self, report: IngestReport | None, gone: list[ChunkPayload]) -> None:
        """One line per document: new, updated, moved, removed, failed; then what was
        embedded (unchanged files and unsupported ones met in a folder are not news)."""
        results = [] if report is None else report.results
        stored = documents(self.store)
        arrived = [stored[r.document_id] for r in results
                   if r.status == "new" and r.document_id in stored]
        moved = moves(gone, arrived)
        moved_in = {d.document_id for d in moved.values()}
        for r in results:
            if r.status == "failed":
                self._line(self.err, f"failed  {r.path}: {r.reason}")
            elif r.status in ("new", "updated") and r.document_id not in moved_in:
                self._line(self.out, f"{r.status:<7} {r.path} ({_chunks(r.chunks)})")
        for doc in gone:
            if doc.document_id in moved:
                self._line(self.out, f"moved   {doc.source} -> {moved[doc.document_id].source}")
            else:
                self._line(self.out, f"removed {doc.source}")
        if report is not None and (report.embedded or report.cached):
            self._line(self.out, f"embedded {_chunks(report.embedded)}, {report.cached} from "
                       "the embedding cache")

    @staticmethod
    def _line(console: Console, text: str) -> None:
        console.print(printable(text), markup=False, highlight=False, soft_wrap=True)
        console.file.flush()


def _chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def check_watchable(paths: list[Path]) -> None:
    """Every path to watch exists: watching starts there."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SettingsError("--watch", f"{printable(missing[0])}: no such file or folder to watch")


def watch(settings: Settings, paths: list[Path], out: Console, err: Console,
          stop: threading.Event | None = None) -> None:
    """Syncs `paths` until Ctrl-C (or `stop`); a file that fails is one line, not the end."""
    import logging

    import watchfiles

    # Its own line on Ctrl-C ("KeyboardInterrupt caught...") is not for the user's terminal.
    logging.getLogger("watchfiles").setLevel(logging.ERROR)

    from ingest.embedder import Embedder
    from ingest.store import open_store

    check_watchable(paths)
    store = open_store(settings)
    try:
        watcher = Watcher(settings, store, Embedder(settings.embedding), out, err)
        announced = False
        # An empty set every second when nothing changed: the first says watching has begun.
        for changes in watchfiles.watch(*paths, step=STEP_MS, debounce=DEBOUNCE_MS,
                                        rust_timeout=1000, yield_on_timeout=True,
                                        stop_event=stop, raise_interrupt=False):
            if not announced:
                folders = ", ".join(printable(p) for p in paths)
                err.print(f"watching {folders}; Ctrl-C stops", markup=False, soft_wrap=True)
                err.file.flush()
                announced = True
            sync = plan(path for _, path in changes)
            if sync.ingest or sync.remove:
                watcher.apply(sync)
    except KeyboardInterrupt:
        pass  # Ctrl-C while a sync ran: what it committed stays, the rest is redone next time
    finally:
        store.close()
    err.print("stopped watching", markup=False)
