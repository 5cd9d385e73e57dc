"""POST /v1/query (answer, JSON or server-sent events) and POST /v1/retrieve (context only)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api.deps import ApiState, StateDep
from app.api.errors import ApiError, from_exception
from app.api.schemas import (
    AnswerOut,
    ErrorEnvelope,
    FiltersIn,
    QueryRequest,
    RetrieveRequest,
    RetrieveResponse,
)
from app.api.sse import HEADERS, sse
from core.choices import ContextMode, Layout, SearchMode
from retrieval.prompt import Message
from retrieval.service import Filters, RetrieveOptions

router = APIRouter(tags=["query"])

_SSE_DOC = (
    "Answer a question from the documents, with citations and the context ledger.\n\n"
    "With `stream: true`: `text/event-stream` with `event: retrieval` (data: {\"ledger\": ...}), "
    "`event: delta` (data: {\"text\": ...}) for each piece of the answer, then `event: done` "
    "(data: the answer object) — or `event: error` (data: the error envelope) when it fails "
    "after the stream started."
)


def options(state: ApiState, question: str, budget_tokens: int | None, layout: Layout | None,
            mode: SearchMode | None, context: ContextMode | None,
            filters: FiltersIn | None) -> RetrieveOptions:
    """Request fields → RetrieveOptions, with the configured limits (api.*)."""
    api = state.settings.api
    if len(question) > api.max_question_chars:
        raise ApiError(422, f"question: longer than the limit of {api.max_question_chars:,} "
                            "characters", param="question", code="question_too_long")
    if budget_tokens is not None and not api.min_budget_tokens <= budget_tokens <= api.max_budget_tokens:
        raise ApiError(422, f"budget_tokens: must be between {api.min_budget_tokens:,} and "
                            f"{api.max_budget_tokens:,}", param="budget_tokens",
                       code="budget_out_of_range")
    if budget_tokens is None:  # the configured default, kept inside the allowed range
        default = state.settings.retrieval.budget_tokens
        if not api.min_budget_tokens <= default <= api.max_budget_tokens:
            budget_tokens = min(max(default, api.min_budget_tokens), api.max_budget_tokens)
    f = filters or FiltersIn(path=None)
    return RetrieveOptions(
        budget_tokens=budget_tokens, layout=layout, search_mode=mode, context_mode=context,
        filters=Filters(tuple(f.document_ids), f.path or None, tuple(f.types)))


def history_of(req: RetrieveRequest) -> tuple[Message, ...]:
    return tuple(Message(m.role, m.content) for m in req.history)


_STOP = object()


def _next(events: Iterator[Any]) -> Any:
    return next(events, _STOP)


async def threaded(events: Iterator[Any]) -> AsyncIterator[Any]:
    """Iterates a blocking generator on worker threads; closes it (which closes the LLM
    request) when the client goes away."""
    try:
        while True:
            item = await anyio.to_thread.run_sync(_next, events)
            if item is _STOP:
                return
            yield item
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):  # still running on a thread: ends by itself
                close()


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorEnvelope} for s in (400, 401, 413, 422, 500, 502, 503)}


@router.post("/v1/retrieve", response_model=None, responses={
    200: {"model": RetrieveResponse}, **ERRORS})
async def retrieve(req: RetrieveRequest, state: StateDep) -> Response:
    """The packed context and its ledger for a question, without an answer (no LLM call).
    The same object as `rag retrieve --json`, plus `context`."""
    return await state.run_retrieval(_retrieve, state, req)


def _retrieve(state: ApiState, req: RetrieveRequest) -> Response:
    opts = options(state, req.question, req.budget_tokens, req.layout, req.mode, req.context,
                   req.filters)
    state.service.start_llm()
    result = state.service.retrieve(req.question, opts, history_of(req))
    data = result.to_dict(with_context=True)
    state.metrics.packed("/v1/retrieve", data)
    return JSONResponse(data)


def final_answer(state: Any, route: str, events: Iterator[Any]) -> dict[str, Any]:
    """The answer of a non-streamed request (Answer.to_dict()), counted in the metrics."""
    for event in events:
        if event.kind == "done":
            data: dict[str, Any] = event.answer.to_dict()
            state.metrics.packed(route, data["ledger"])
            state.metrics.answered(data["usage"])
            return data
    raise ApiError(502, "the answer ended without a result", code="llm_error")


@router.post("/v1/query", response_model=None, description=_SSE_DOC, responses={
    200: {"model": AnswerOut, "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **ERRORS})
def query(req: QueryRequest, state: StateDep) -> Response:
    """Answer a question from the documents, with citations and the context ledger."""
    opts = options(state, req.question, req.budget_tokens, req.layout, req.mode, req.context,
                   req.filters)
    state.service.start_llm()
    events = state.service.stream(req.question, history_of(req), opts)
    if not req.stream:
        return JSONResponse(final_answer(state, "/v1/query", events))
    first = next(events)  # the retrieval: until here a failure is a plain JSON error
    return StreamingResponse(_stream(state, first, events), media_type="text/event-stream",
                             headers=HEADERS)


async def _stream(state: ApiState, first: Any, events: Iterator[Any]) -> AsyncIterator[str]:
    try:
        ledger = first.retrieval.to_dict()
        state.metrics.packed("/v1/query", ledger)
        yield sse({"ledger": ledger}, "retrieval")
        async for event in threaded(events):
            if event.kind == "delta":
                yield sse({"text": event.text}, "delta")
            elif event.kind == "done":
                data = event.answer.to_dict()
                state.metrics.answered(data["usage"])
                yield sse(data, "done")
    except Exception as exc:
        yield sse(from_exception(exc).envelope(), "error")
