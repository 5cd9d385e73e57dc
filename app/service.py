"""The RAG service: question (+ history, filters, budget, layout) → served model → packed
context → streamed answer → citations. The CLI, the REST API and the UI all call this.

The served model decides the arithmetic: its context window (vLLM reports max_model_len),
its tokenizer (Llama 3.1's, or the GGUF's own for the CPU default) and its chat template
(serving/served.py); retrieval packs the context for it (retrieval/context.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from opentelemetry.trace import Span

from app import tracing
from app.citations import Citation, cite
from app.history import check_conversation
from app.llm import LLMClient, PromptTooLongError
from app.pages import DEFAULT_WIDTH, PageImage, page_image, stored_entry
from app.runtime import Runtime
from app.sentence_check import SentenceCheck, check_answer
from app.served_model import ServedModel
from core.settings import Settings
from ingest.documents import DocumentInfo, DocumentPage
from retrieval.context import Contexts, search_query
from retrieval.prompt import Message, build_messages, template_tokens
from retrieval.service import Retrieval, RetrieveOptions, check_question
from serving.served import Served

# Importable from here as before: the service's own types and helpers.
__all__ = ["Answer", "Event", "RagService", "Served", "search_query"]


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation]
    invalid_citations: list[int]
    retrieval: Retrieval
    usage: dict[str, Any]
    model: str
    search_query: str
    reused_context: bool = False
    finish_reason: str | None = None
    sentences: list[SentenceCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        ledger = self.retrieval.to_dict()
        ledger["reused_context"] = self.reused_context
        ledger["search_query"] = self.search_query
        return {
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "invalid_citations": self.invalid_citations,
            "ledger": ledger,
            "usage": self.usage,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "sentences": [s.to_dict() for s in self.sentences],
        }


@dataclass
class Event:
    """One step of a streamed answer: the packed context, answer text, then the end."""

    kind: Literal["retrieval", "delta", "done"]
    text: str = ""
    retrieval: Retrieval | None = None
    answer: Answer | None = None


@dataclass
class _Reply:
    """What the LLM has sent so far for one answer."""

    parts: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    finish: str | None = None
    first: float | None = None  # seconds to the first token


class RagService:
    """served model → context → LLM → citations. Thread-safe: retrievals read the store
    together under the runtime's lock (writes take it alone); the conversation is counted
    and the LLM called outside it.

    Over 60 lines: besides `stream` it is the one object routes and commands hold, so it
    carries the few delegating methods they need (documents, the LLM, the served model)."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None,
                 llm: LLMClient | None = None):
        self.settings = settings
        self._own_runtime = runtime is None
        self.runtime = runtime or Runtime(settings)
        self.contexts = Contexts(settings, self.runtime.store, self.runtime.shared_embedder)
        self.model = ServedModel(settings, llm)
        self._remembering = threading.Lock()  # the contexts' memory of recent answers

    def close(self) -> None:
        with self.runtime.lock.write():
            self.model.close()
            if self._own_runtime:
                self.runtime.close()

    def __enter__(self) -> RagService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the served model (see app/served_model.py) -----------------------------------
    def start_llm(self) -> LLMClient:
        """The LLM client, made on the first call (without llm.url: our llama.cpp server is
        started, which takes a while)."""
        return self.model.start()

    def llm_client(self) -> LLMClient | None:
        """The LLM client if `start_llm` made one (nothing is started)."""
        return self.model.client()

    def served(self, require_server: bool = True) -> Served:
        return self.model.served(require_server)

    # -- documents ------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        return self.runtime.documents()

    def document_page(self, limit: int, cursor: str | None = None) -> DocumentPage:
        return self.runtime.document_page(limit, cursor)

    def delete_document(self, id_or_path: str) -> DocumentInfo:
        return self.runtime.delete_document(id_or_path)

    def document_count(self) -> int:
        return self.runtime.document_count()

    def page_image(self, document_id: str, number: int, highlight: str = "",
                   width: int = DEFAULT_WIDTH) -> PageImage:
        """Page `number` of a stored PDF as a PNG with `highlight` marked (app/pages.py)."""
        with self.runtime.lock.read():
            entry = stored_entry(self.runtime.store, document_id)
        return page_image(entry, number, highlight, width)

    # -- retrieval only ---------------------------------------------------------------------
    def retrieve(self, question: str, options: RetrieveOptions | None = None,
                 history: tuple[Message, ...] = ()) -> Retrieval:
        """The packed context for the served model's window, without an answer."""
        question = check_question(question)
        served = self.served(require_server=False)
        options = replace(options or RetrieveOptions(), history=tuple(history))
        self._check_conversation(served, question, options)
        with self.runtime.lock.read():
            return self.contexts.build(served, question, options, reuse=False)

    # -- answers ----------------------------------------------------------------------------
    def ask(self, question: str, history: tuple[Message, ...] = (),
            options: RetrieveOptions | None = None) -> Answer:
        for event in self.stream(question, history, options):
            if event.kind == "done" and event.answer is not None:
                return event.answer
        raise AssertionError("stream ended without an answer")  # pragma: no cover

    def stream(self, question: str, history: tuple[Message, ...] = (),
               options: RetrieveOptions | None = None) -> Iterator[Event]:
        """served model → context → LLM → citations, as events. A server whose window turns
        out smaller than it said (or than configured) gets the context packed again once."""
        question = check_question(question)
        options = replace(options or RetrieveOptions(), history=tuple(history))
        served = self.served(require_server=True)
        self._check_conversation(served, question, options)
        root = tracing.start("rag.query", rag__history_turns=len(history))
        try:
            yield from self._stream(served, question, options, root)
        except BaseException as exc:
            tracing.fail(root, exc)
            raise
        finally:
            root.end()

    def _stream(self, served: Served, question: str, options: RetrieveOptions,
                root: Span) -> Iterator[Event]:
        started = time.perf_counter()
        reply = _Reply()
        for attempt in range(2):
            with self.runtime.lock.read(), tracing.stage("rag.retrieve", root, current=True) as span:
                retrieval = self.contexts.build(served, question, options)
                _trace_retrieval(span, retrieval)
            # Consumers keep the last retrieval event.
            yield Event("retrieval", retrieval=retrieval)
            messages = build_messages(retrieval.packing.context, question, options.history)
            prompt_tokens = self._prompt_tokens(served, messages)
            try:
                with tracing.stage("rag.llm", root, gen_ai__request__model=served.model,
                                   gen_ai__usage__prompt_tokens_counted=prompt_tokens) as span:
                    yield from self._generate(served, messages, prompt_tokens, reply, started)
                    _trace_reply(span, reply)
                break
            except PromptTooLongError as exc:
                if attempt or reply.parts or not exc.window or exc.window >= served.context_window:
                    raise
                served = self.model.smaller_window(served, exc.window)
        text = "".join(reply.parts).strip()
        with tracing.stage("rag.citations", root, current=True) as span:
            citations, invalid = cite(text, retrieval.packing.passages)
            # The embedder is shared with retrieval: each batch under the lock, the rest outside.
            sentences = check_answer(text, retrieval.packing.passages,
                                     self.runtime.locked_embedder().embed)
            tracing.annotate(span, rag__citations=len(citations), rag__invalid_citations=len(invalid),
                             rag__unsupported=sum(s.support != "supported" for s in sentences))
        answer = Answer(question, text, citations, invalid, retrieval,
                        _usage(reply.usage, prompt_tokens, started, reply.first), served.model,
                        retrieval.search_query, retrieval.reused, reply.finish, sentences)
        with self._remembering:
            self.contexts.remember(text, retrieval, options)
        yield Event("done", answer=answer)

    def _generate(self, served: Served, messages: list[dict[str, str]], prompt_tokens: int,
                  reply: _Reply, started: float) -> Iterator[Event]:
        """The answer's text as delta events, collected into `reply`."""
        window = served.context_window
        if prompt_tokens >= window:
            raise PromptTooLongError(
                f"the prompt needs {prompt_tokens:,} tokens but the model's window is "
                f"{window:,}: shorten the conversation or the question", window)
        max_tokens = max(1, min(self.settings.retrieval.answer_reserve, window - prompt_tokens))
        for delta in self.start_llm().chat_stream(messages, max_tokens,
                                                  self.settings.llm.temperature):
            if delta.text:
                if reply.first is None:
                    reply.first = time.perf_counter() - started
                reply.parts.append(delta.text)
                yield Event("delta", text=delta.text)
            reply.usage = delta.usage or reply.usage
            reply.finish = delta.finish_reason or reply.finish

    def _check_conversation(self, served: Served, question: str,
                            options: RetrieveOptions) -> None:
        """PromptTooLongError, before any lock or search, when the question and history
        alone leave no room in the window for the answer reserve."""
        check_conversation(served.counter, [question, *(m.content for m in options.history)],
                           served.context_window, self.settings.retrieval.answer_reserve)

    def _prompt_tokens(self, served: Served, messages: list[dict[str, str]]) -> int:
        c = served.counter
        return template_tokens(c, [m["role"] for m in messages], served.chat_format) + sum(
            c.count(m["content"]) for m in messages)


def _trace_retrieval(span: Span, retrieval: Retrieval) -> None:
    tracing.annotate(span, rag__budget_tokens=retrieval.budget.available,
                     rag__tokens_packed=retrieval.packing.used_tokens,
                     rag__passages=len(retrieval.packing.passages),
                     rag__candidates=retrieval.candidates, rag__mode=retrieval.packing.mode,
                     rag__search_mode=retrieval.search_mode,
                     rag__reused_context=retrieval.reused)


def _trace_reply(span: Span, reply: _Reply) -> None:
    usage = reply.usage
    tracing.annotate(span, gen_ai__usage__input_tokens=usage.get("prompt_tokens"),
                     gen_ai__usage__output_tokens=usage.get("completion_tokens"),
                     gen_ai__usage__cached_tokens=(usage.get("prompt_tokens_details") or {})
                     .get("cached_tokens"),
                     rag__time_to_first_token_s=reply.first,
                     gen_ai__response__finish_reason=reply.finish)


def _usage(server: dict[str, Any], counted: int, started: float,
           first: float | None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": server.get("prompt_tokens", counted),
        "completion_tokens": server.get("completion_tokens"),
        "total_tokens": server.get("total_tokens"),
        "prompt_tokens_counted": counted,
        "seconds": round(time.perf_counter() - started, 3),
        "time_to_first_token_s": round(first, 3) if first is not None else None,
    }
    details = server.get("prompt_tokens_details") or {}
    if details.get("cached_tokens") is not None:
        usage["cached_tokens"] = details["cached_tokens"]
    return usage
