"""Evaluation: start a `rag eval` run as a background job, follow it, list earlier runs."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.deps import StateDep
from app.api.errors import ApiError
from app.api.routes_query import ERRORS
from app.api.schemas import ErrorEnvelope
from app.evaluation import EvalOptions
from app.evaluation.corpus import EmptyCollectionError
from app.evaluation.jobs import EvalBusyError, EvalJobs
from app.evaluation.options import DEFAULT_BUDGETS, MAX_PROBES
from core.choices import Layout, SearchMode

router = APIRouter(tags=["evaluation"])
_ERRORS = {**ERRORS, 404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}}
_MADE = threading.Lock()


class EvalRequest(BaseModel):
    """What `rag eval` takes; the collection is the API's own."""

    model_config = ConfigDict(extra="forbid")

    probes: int = Field(10, ge=1, le=MAX_PROBES, description="Probes of each kind.")
    budgets: list[Annotated[int, Field(ge=1, le=1_048_576)]] = Field(
        list(DEFAULT_BUDGETS), min_length=1, max_length=16, description="Requested budgets.")
    layouts: list[Layout] = Field(list(Layout), min_length=1)
    modes: list[SearchMode] = Field([], description="Search modes; none: the configured one.")
    kinds: list[Literal["needle", "passage"]] = Field(["needle", "passage"], min_length=1)
    answers: bool = Field(False, description="Also ask the served model at each cell.")
    no_llm: bool = Field(False, description="Passage probes masked, not written by the model.")
    seed: int = 0

    @field_validator("probes", "seed", "budgets", mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        """JSON true is no number (pydantic would read it as 1)."""
        if isinstance(v, bool) or (isinstance(v, list) and any(isinstance(x, bool) for x in v)):
            raise ValueError("must be an integer, not true or false")
        return v

    def options(self) -> EvalOptions:
        return EvalOptions(probes=self.probes, budgets=tuple(sorted(set(self.budgets))),
                           layouts=tuple(dict.fromkeys(self.layouts)),
                           modes=tuple(dict.fromkeys(self.modes)), answers=self.answers,
                           llm_questions=not self.no_llm, seed=self.seed,
                           kinds=tuple(dict.fromkeys(self.kinds)))


class EvalJobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    stage: str = Field(description="read | questions | ingest | retrieve (answer, with "
                                   "answers), while running.")
    done: int
    total: int
    error: str | None
    options: dict[str, Any]
    run: dict[str, Any] | None = Field(
        description="When done: probes, cells (recall per budget × layout × mode), the "
                    "recommendation, the corpus and settings fingerprints.")
    created_at: float | None
    finished_at: float | None


class EvalAccepted(BaseModel):
    job: EvalJobOut


class EvalRunList(BaseModel):
    data: list[dict[str, Any]]


def eval_jobs(request: Request, state: StateDep) -> EvalJobs:
    """The app's evaluation jobs, made on first use."""
    with _MADE:
        jobs = getattr(request.app.state, "eval_jobs", None)
        if jobs is None:
            jobs = request.app.state.eval_jobs = EvalJobs(state.service)
    return jobs


JobsDep = Annotated[EvalJobs, Depends(eval_jobs)]


@router.post("/v1/eval", status_code=202, response_model=EvalAccepted, responses=_ERRORS)
def start(body: EvalRequest, jobs: JobsDep) -> JSONResponse:
    """Start an evaluation of the collection (poll GET /v1/eval/{id}). One runs at a time;
    a collection without documents is refused (409, code empty_collection)."""
    try:
        job = jobs.submit(body.options())
    except EvalBusyError as exc:
        raise ApiError(409, str(exc), code="eval_running") from None
    except EmptyCollectionError as exc:
        raise ApiError(409, str(exc), code="empty_collection") from None
    return JSONResponse({"job": job.to_dict()}, status_code=202,
                        headers={"Location": f"/v1/eval/{job.id}"})


@router.get("/v1/eval", response_model=EvalRunList, responses=ERRORS)
def runs(jobs: JobsDep) -> dict[str, Any]:
    """Saved runs, newest first: when, corpus and settings fingerprints, recommendation."""
    return {"data": jobs.runs()}


@router.get("/v1/eval/{job_id}", response_model=EvalJobOut, responses=_ERRORS)
def job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    """A job's progress and, when done, its results; or a saved run by its id."""
    return jobs.get(job_id)
