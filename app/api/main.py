"""The FastAPI app: one RagService per process, thin routers over it, one error envelope.

Routes: see README ("REST API"). `create_app(settings, service)` takes a ready service (tests
inject one with a preloaded embedder); without one it opens the configured store now, so a
locked embedded store fails at startup with its one-line message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from app import tracing
from app.api import errors, routes_documents, routes_health, routes_openai, routes_pages, routes_query
from app.api.deps import ApiState
from app.api.jobs import JobManager
from app.api.metrics import Metrics, MetricsMiddleware
from app.api.middleware import AuthMiddleware, BodyLimitMiddleware
from app.api.routes_eval import router as eval_router
from app.service import RagService
from core.settings import Settings, load_settings

log = logging.getLogger("rag.api")

HEALTH_PATHS = {"/healthz", "/readyz"}
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
UPLOAD_PATH = "/v1/documents"
_MULTIPART_SLACK = 1 << 20  # part headers and boundaries around the files


def create_app(settings: Settings | None = None, service: RagService | None = None) -> FastAPI:
    """The REST API over `service` (a RagService; built from `settings` when not given)."""
    if settings is None:
        settings = service.settings if service is not None else load_settings()
    owns = service is None
    if service is None:
        service = RagService(settings)
    metrics = Metrics()
    state = ApiState(settings, service, JobManager(settings, service, metrics,
                                                   keep=settings.api.jobs_kept), metrics, owns)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=state.warm_up, name="api-warm-up", daemon=True).start()
        try:
            yield
        finally:
            state.readiness.stop()
            state.llm_probe.close()
            state.jobs.close()
            if state.owns_service:
                state.service.close()

    app = FastAPI(
        title="Long-context RAG API",
        version="1.0.0",
        summary="Answers over your documents with up to 128k tokens of packed context.",
        description="Every error is `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. "
                    "With API keys configured, send `Authorization: Bearer KEY` (all routes but "
                    "/healthz and /readyz).",
        lifespan=lifespan,
    )
    app.state.api = state
    errors.install(app)
    for module in (routes_query, routes_openai, routes_documents, routes_pages, routes_health):
        app.include_router(module.router)
    app.include_router(eval_router)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]

    # Outermost last: metrics see every response, including 401 and 413.
    api = settings.api
    body_limit = int(api.max_body_mb * 2**20)
    upload_limit = int(api.max_upload_mb * 2**20) * api.max_files_per_upload + _MULTIPART_SLACK
    app.add_middleware(BodyLimitMiddleware,
                       limit_for=lambda path: upload_limit if path == UPLOAD_PATH else body_limit)
    if api.keys:
        public = set(HEALTH_PATHS)
        public |= DOCS_PATHS if api.docs_public else set()
        public |= {"/metrics"} if api.metrics_public else set()
        app.add_middleware(AuthMiddleware, keys=list(api.keys), public=public)
    if api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors_origins),
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Location"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    tracing.instrument_api(app, settings)
    return app


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The generated document, with the configured limits and the key scheme written in."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary,
                      description=app.description, routes=app.routes)
    api = settings.api
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("RetrieveRequest", "QueryRequest", "ChatCompletionRequest"):
        props = schemas.get(name, {}).get("properties", {})
        if "question" in props:
            props["question"]["maxLength"] = api.max_question_chars
        budget = props.get("budget_tokens")
        for branch in (budget.get("anyOf", [budget]) if budget else []):
            if branch.get("type") == "integer":
                branch["minimum"] = api.min_budget_tokens
                branch["maximum"] = api.max_budget_tokens
    body = doc.get("paths", {}).get(UPLOAD_PATH, {}).get("post", {}).get("requestBody", {})
    upload = body.get("content", {}).get("multipart/form-data", {}).get("schema", {})
    if "files" in upload.get("properties", {}):
        upload["properties"]["files"]["maxItems"] = api.max_files_per_upload
    if api.keys:
        doc.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
        public = HEALTH_PATHS | (DOCS_PATHS if api.docs_public else set()) | (
            {"/metrics"} if api.metrics_public else set())
        for path, ops in doc.get("paths", {}).items():
            if path in public:
                for op in ops.values():
                    op["security"] = []
    app.openapi_schema = doc
    return doc
