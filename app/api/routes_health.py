"""Operations: /healthz (the process is up), /readyz (Qdrant and the LLM answer), /metrics,
and /v1/config (what the UI needs to draw its controls)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from app.api.deps import StateDep
from app.api.errors import envelope
from app.api.metrics import CONTENT_TYPE
from app.api.routes_query import ERRORS
from app.api.schemas import MAX_HISTORY, ConfigOut, ErrorEnvelope, Health, Readiness
from core.choices import ContextMode, Layout, SearchMode, names
from ingest.loaders import supported_extensions

router = APIRouter(tags=["operations"])
UPLOAD_TYPES = supported_extensions()


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when the store answers and an LLM server is reachable; 503 names what failed.
    Answered from the last background check (`checked_s_ago`, at most a few seconds)."""
    report = state.readiness.report()
    checks = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in report.checks.items()}
    age = round(report.age_s(), 3)
    if all(c["ok"] for c in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks, "checked_s_ago": age})
    failed = [name for name, c in checks.items() if not c["ok"]]
    body: dict[str, Any] = {"status": "not_ready", "checks": checks, "checked_s_ago": age,
                            **envelope(503, "not ready: " + "; ".join(
                                f"{n}: {checks[n]['detail']}" for n in failed),
                                param=",".join(failed), code="not_ready")}
    return JSONResponse(body, status_code=503)


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
    401: {"model": ErrorEnvelope}})
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/v1/config", response_model=ConfigOut, responses=ERRORS)
def config(state: StateDep) -> dict[str, Any]:
    """The served model and window, the request defaults and the limits."""
    state.service.start_llm()
    served = state.service.served(require_server=False)
    s = state.settings
    r = s.retrieval
    api = s.api
    return {
        "context_window": served.context_window,
        "model": served.model,
        "defaults": {"budget_tokens": min(max(r.budget_tokens, api.min_budget_tokens),
                                          api.max_budget_tokens),
                     "layout": r.layout, "mode": r.search_mode, "context": r.context_mode},
        "choices": {"layout": names(Layout), "mode": names(SearchMode),
                    "context": names(ContextMode)},
        "limits": {"max_question_chars": api.max_question_chars,
                   "min_budget_tokens": api.min_budget_tokens,
                   "max_budget_tokens": api.max_budget_tokens,
                   "max_body_mb": api.max_body_mb, "max_upload_mb": api.max_upload_mb,
                   "max_files_per_upload": api.max_files_per_upload,
                   "max_history": MAX_HISTORY, "upload_types": UPLOAD_TYPES},
        "auth": bool(api.keys),
    }
