"""Evaluation jobs of the API: one runs at a time on a background thread over the service's
store, embedder and model (store access under the runtime's lock, so questions keep being
answered); progress and results are readable while it runs and after."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from app.evaluation.corpus import check_corpus
from app.evaluation.evaluate import EvalProgress, Evaluation, model_for
from app.evaluation.options import EvalOptions
from app.evaluation.runs import list_runs, load_run, save_run
from core.errors import NotFoundError, RagError

if TYPE_CHECKING:
    from app.service import RagService

log = logging.getLogger("rag.api")
EvalStatus = Literal["queued", "running", "done", "failed"]


class EvalBusyError(RagError):
    """An evaluation is already running (one at a time: each holds a temporary collection
    and most of the CPU)."""


@dataclass
class EvalJob:
    id: str
    options: EvalOptions
    status: EvalStatus = "queued"
    stage: str = ""
    done: int = 0
    total: int = 0
    error: str | None = None
    run: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "stage": self.stage, "done": self.done,
                "total": self.total, "error": self.error, "options": self.options.to_dict(),
                "run": self.run, "created_at": self.created_at,
                "finished_at": self.finished_at}


class _JobProgress(EvalProgress):
    def __init__(self, job: EvalJob):
        self.job = job

    def stage(self, name: str, total: int) -> None:
        self.job.stage, self.job.total, self.job.done = name, total, 0

    def advance(self, n: int = 1) -> None:
        self.job.done += n


def public_run(run: dict[str, Any]) -> dict[str, Any]:
    """A saved run as the API returns it: everything but the per-probe measurements."""
    return {k: v for k, v in run.items() if k != "measurements"}


class EvalJobs:
    KEEP = 32

    def __init__(self, service: RagService):
        self.service = service
        self.settings = service.settings
        self._jobs: OrderedDict[str, EvalJob] = OrderedDict()
        self._guard = threading.Lock()

    def submit(self, options: EvalOptions) -> EvalJob:
        """Starts a job; refused at once (EmptyCollectionError, EvalBusyError) when the
        collection holds no document or another evaluation runs."""
        runtime = self.service.runtime
        with runtime.lock.read():
            check_corpus(runtime.store, self.settings.store.collection)
        with self._guard:
            if any(j.status in ("queued", "running") for j in self._jobs.values()):
                raise EvalBusyError("an evaluation is already running: wait for it to finish")
            job = EvalJob(uuid.uuid4().hex, options)
            self._jobs[job.id] = job
            while len(self._jobs) > self.KEEP:
                self._jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job,), name="eval-job", daemon=True).start()
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """A job of this process, or a saved run by its id."""
        with self._guard:
            job = self._jobs.get(job_id)
        if job is not None:
            return job.to_dict()
        if not job_id.replace("-", "").isalnum():
            raise NotFoundError(f"no evaluation '{job_id}'")
        run = load_run(self.settings, job_id).to_dict()
        return {"id": job_id, "status": "done", "stage": "", "done": 0, "total": 0,
                "error": None, "options": run["options"], "run": public_run(run),
                "created_at": None, "finished_at": None}

    def runs(self) -> list[dict[str, Any]]:
        return [r.summary() for r in list_runs(self.settings)]

    def _run(self, job: EvalJob) -> None:
        job.status = "running"
        runtime = self.service.runtime
        try:
            llm, served = model_for(self.service.model, job.options)
            with runtime.lock:
                embedder = runtime.embedder()
            run = Evaluation(self.settings, runtime.store, embedder, served, llm,
                             lock=runtime.lock, progress=_JobProgress(job)).run(job.options)
            save_run(self.settings, run)
            job.run = public_run(run.to_dict())
            job.status = "done"
        except RagError as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # the job reports it; the server goes on
            log.error("evaluation failed", exc_info=exc)
            job.error, job.status = "internal error (the server log has the details)", "failed"
        finally:
            job.finished_at = time.time()
