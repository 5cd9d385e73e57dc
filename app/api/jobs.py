"""Upload ingest jobs: one background thread runs them in order through the same pipeline
as `rag ingest`, and their progress is readable while they run (GET /v1/jobs/{id}).

Each job is also written to data_dir/jobs/<id>.json as it progresses, so that with several
API workers (one data dir, a Qdrant server) any worker can report any job, and a job whose
worker died is reported failed rather than running forever.

A job writes through the runtime's locked store and embedder (app/runtime.py), one store
call at a time: questions keep being answered while a large upload is embedded.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.api.metrics import Metrics
from app.api.upload_files import upload_folder
from core.settings import Settings
from core.tracing import span
from ingest.pipeline import FileResult, Progress, ingest

if TYPE_CHECKING:
    from app.service import RagService

log = logging.getLogger("rag.api")
JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass
class Job:
    id: str
    paths: list[Path]
    status: JobStatus = "queued"
    files_total: int = 0
    files_done: int = 0
    chunks_embedded: int = 0
    chunks_cached: int = 0  # of chunks_embedded, those whose vectors came from the cache
    results: list[FileResult] = field(default_factory=list)
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    pid: int = field(default_factory=os.getpid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "files_total": self.files_total,
            "files_done": self.files_done, "chunks_embedded": self.chunks_embedded,
            "chunks_cached": self.chunks_cached,
            "results": [{"path": r.path, "status": r.status, "reason": r.reason,
                         "document_id": r.document_id, "chunks": r.chunks, "notes": r.notes}
                        for r in list(self.results)],
            "error": self.error, "created_at": self.created_at, "finished_at": self.finished_at,
        }


class _JobProgress(Progress):
    def __init__(self, job: Job, saved: Any):
        self.job = job
        self.saved = saved
        self._last = 0.0

    def start(self, total_files: int) -> None:
        self.job.files_total = total_files
        self.saved(self.job)

    def found(self, documents: int) -> None:
        self.job.files_total += documents
        self.saved(self.job)

    def file_done(self, result: FileResult) -> None:
        self.job.results.append(result)
        self.job.files_done += 1
        self.saved(self.job)

    def embedded(self, chunks: int) -> None:
        self.job.chunks_embedded += chunks
        if time.monotonic() - self._last > 0.5:
            self._last = time.monotonic()
            self.saved(self.job)

    def cached(self, chunks: int) -> None:
        self.job.chunks_cached += chunks


class JobManager:
    """Queued ingest jobs, run one at a time on a background thread; the last `keep`
    jobs stay readable."""

    def __init__(self, settings: Settings, service: RagService, metrics: Metrics | None = None,
                 keep: int = 256):
        self.settings = settings
        self.service = service
        self.metrics = metrics
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.folder = Path(settings.data_dir) / "jobs"

    def submit(self, paths: list[Path]) -> Job:
        job = Job(uuid.uuid4().hex, list(paths), files_total=len(paths))
        with self._guard:
            if self._closed:
                raise RuntimeError("the job manager is closed")
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                oldest = next(iter(self._jobs.values()))
                if oldest.status in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
            self._save(job)
            self._prune_files()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="ingest-jobs",
                                                daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job as JSON: this process's own, else one another worker wrote down."""
        with self._guard:
            job = self._jobs.get(job_id)
        if job is not None:
            return job.to_dict()
        if not job_id.isalnum():
            return None
        try:
            data: dict[str, Any] = json.loads((self.folder / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None
        pid = data.pop("pid", None)
        data.pop("paths", None)
        if data.get("status") in ("queued", "running") and not _alive(pid):
            data["status"] = "failed"
            data["error"] = "the API process running this job stopped before it finished"
        return data

    def _save(self, job: Job) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            part = self.folder / f".{job.id}.{threading.get_ident()}.part"
            part.write_text(json.dumps({**job.to_dict(), "pid": job.pid,
                                        "paths": [str(p) for p in job.paths]}))
            os.replace(part, self.folder / f"{job.id}.json")
        except OSError as exc:  # progress on disk is a convenience; the job goes on
            log.warning("cannot write job %s: %s", job.id, exc)

    def _prune_files(self) -> None:
        try:
            files = sorted(self.folder.glob("*.json"), key=lambda f: f.stat().st_mtime)
        except OSError:
            return
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)

    def pending(self) -> int:
        with self._guard:
            return sum(1 for j in self._jobs.values() if j.status in ("queued", "running"))

    def pending_paths(self) -> set[Path]:
        """The files of this process's queued and running jobs."""
        with self._guard:
            return {p for j in self._jobs.values() if j.status in ("queued", "running")
                    for p in j.paths}

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops taking jobs and waits (bounded) for the running one; queued ones are dropped.
        A job cut short leaves the store consistent (see ingest/pipeline.py)."""
        with self._guard:
            self._closed = True
            thread = self._thread
        self._queue.put(None)
        if thread is not None:
            thread.join(timeout_s)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status = "running"
        self._save(job)
        runtime = self.service.runtime
        store = runtime.locked_store()
        try:
            # The job's own trace (it runs after the upload's request has been answered).
            with span("rag.ingest", rag__paths=len(job.paths), rag__job=job.id):
                ingest(self.settings, job.paths, progress=_JobProgress(job, self._save), store=store,
                       embedder=runtime.locked_embedder())
            job.status = "done"
        except Exception as exc:  # the job reports it; the server goes on
            from app.api.errors import from_exception

            job.error = from_exception(exc).message
            job.status = "failed"
        finally:
            store.release_held()
            job.finished_at = time.time()
            self._remove_failed_files(job)
            self._save(job)
            if self.metrics is not None:
                self.metrics.jobs.labels(job.status).inc()


    def _remove_failed_files(self, job: Job) -> None:
        """The uploaded files of a job that did not end stored: each file whose ingest
        failed, and all not stored of a job that failed as a whole."""
        stored = {Path(r.path).resolve() for r in job.results if r.status != "failed"}
        failed = [Path(r.path) for r in job.results if r.status == "failed"]
        if job.status == "failed":
            failed += job.paths
        upload_folder(self.settings.data_dir).remove(
            [p for p in failed if p.resolve() not in stored])


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
