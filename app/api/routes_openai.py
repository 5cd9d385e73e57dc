"""OpenAI-compatible routes, so the official `openai` client and tools built on it work
unchanged: POST /v1/chat/completions (RAG over the collection) and GET /v1/models.

Messages: the last user message is the question; earlier user and assistant messages are
the history. System and developer messages are ignored: the RAG system prompt (instruction
plus numbered passages) takes their place, and a stable system prompt is what lets the LLM
server reuse its prefix cache. Sampling fields (temperature, max_tokens...) are ignored too:
the server's llm.* settings apply. `citations`, `ledger` and `sentences` ride as extra
top-level fields of the response (streaming: of the final chunk), which plain clients ignore.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api.deps import ApiState, StateDep
from app.api.errors import ApiError, from_exception
from app.api.routes_query import ERRORS, final_answer, options, threaded
from app.api.schemas import ChatCompletion, ChatCompletionRequest, ModelList
from app.api.sse import DONE, HEADERS, sse
from retrieval.prompt import Message

router = APIRouter(tags=["openai"])


def _conversation(req: ChatCompletionRequest) -> tuple[str, tuple[Message, ...]]:
    turns = [m for m in req.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise ApiError(422, "messages: the last user or assistant message must be from the user "
                            "(it is the question)", param="messages")
    question = turns[-1].text()
    if not question.strip():
        raise ApiError(422, "messages: the last user message is empty", param="messages")
    return question, tuple(Message(m.role, m.text()) for m in turns[:-1])


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
def models(state: StateDep) -> dict[str, Any]:
    """The model that answers, with its context window (an extra field)."""
    state.service.start_llm()
    served = state.service.served(require_server=True)
    return {"object": "list", "data": [{
        "id": served.model, "object": "model", "created": state.created, "owned_by": "rag",
        "context_window": served.context_window}]}


@router.post("/v1/chat/completions", response_model=None, responses={
    200: {"model": ChatCompletion, "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **ERRORS})
def chat_completions(req: ChatCompletionRequest, state: StateDep) -> Response:
    """RAG over the collection in OpenAI's chat completion shape (streaming or not)."""
    question, history = _conversation(req)
    opts = options(state, question, req.budget_tokens, req.layout, req.mode, req.context,
                   req.filters)
    state.service.start_llm()
    events = state.service.stream(question, history, opts)
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
    if not req.stream:
        data = final_answer(state, "/v1/chat/completions", events)
        return JSONResponse({
            **meta, "object": "chat.completion", "model": data["model"],
            "choices": [{"index": 0, "logprobs": None,
                         "message": {"role": "assistant", "content": data["answer"]},
                         "finish_reason": data["finish_reason"] or "stop"}],
            "usage": _usage(data["usage"]), "citations": data["citations"],
            "ledger": data["ledger"], "sentences": data["sentences"]})
    # Up to the first token (or the end) before answering 200: a failure so far keeps its
    # HTTP status, which the openai client turns into the matching exception.
    primed = []
    for event in events:
        primed.append(event)
        if event.kind != "retrieval":
            break
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    meta["model"] = state.service.served(require_server=False).model  # cached by stream()
    return StreamingResponse(_chunks(state, meta, primed, events, include_usage),
                             media_type="text/event-stream", headers=HEADERS)


async def _chunks(state: ApiState, meta: dict[str, Any], primed: list[Any],
                  events: Iterator[Any], include_usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse({**meta, "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                   "finish_reason": finish}], **extra})

    async def all_events() -> AsyncIterator[Any]:
        for event in primed:
            yield event
        async for event in threaded(events):
            yield event

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in all_events():
            if event.kind == "retrieval":
                state.metrics.packed("/v1/chat/completions", event.retrieval.to_dict())
            elif event.kind == "delta":
                yield chunk({"content": event.text})
            elif event.kind == "done":
                data = event.answer.to_dict()
                state.metrics.answered(data["usage"])
                yield chunk({}, data["finish_reason"] or "stop", citations=data["citations"],
                            ledger=data["ledger"], sentences=data["sentences"])
                if include_usage:
                    yield sse({**meta, "object": "chat.completion.chunk", "choices": [],
                               "usage": _usage(data["usage"])})
        yield sse(DONE)
    except Exception as exc:  # OpenAI's way: the error envelope as a data event
        yield sse(from_exception(exc).envelope())
