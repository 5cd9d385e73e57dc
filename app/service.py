"""The RAG service: question (+ history, filters, budget, layout) → retrieve and pack →
prompt → streamed answer → citations. The CLI, the REST API and the UI all call this.

The served model decides the arithmetic: its context window (vLLM reports max_model_len),
its tokenizer (Llama 3.1's, or the GGUF's own for the CPU default) and its chat template.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from app.citations import Citation, cite
from app.llm import LLMClient, ModelInfo, PromptTooLongError
from app.runtime import Runtime
from core.errors import RagError, SettingsError
from core.settings import Settings
from ingest.tokenizer import load_gguf_counter, load_tokenizer
from retrieval.budget import Budget, compute_budget
from retrieval.packer import LeftOut, Packing, Passage, render
from retrieval.prompt import ChatFormat, Message, build_messages, prompt_overhead, template_tokens
from retrieval.service import Retrieval, RetrieveOptions, Retriever

MAX_QUESTION_CHARS = 8000


@dataclass(frozen=True)
class Served:
    """What the packer needs to know about the model that will read the context."""

    model: str
    context_window: int
    window_source: str  # server | settings | cpu_server
    counter: Any
    chat_format: ChatFormat
    url: str | None


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
        }


@dataclass
class Event:
    """One step of a streamed answer: the packed context, answer text, then the end."""

    kind: Literal["retrieval", "delta", "done"]
    text: str = ""
    retrieval: Retrieval | None = None
    answer: Answer | None = None


@dataclass
class _Remembered:
    retrieval: Retrieval
    options: RetrieveOptions
    generation: int
    expires: float


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:32]


def search_query(question: str, history: tuple[Message, ...]) -> str:
    """The text searched for: the question, plus the previous question when there is a
    conversation, so that "and how long does it take?" still finds its subject."""
    previous = [m.content for m in history if m.role == "user"][-1:]
    return "\n".join([*previous, question]) if previous else question


class RagService:
    """Thread-safe: store access is serialised; LLM calls run concurrently."""

    REMEMBER = 256  # conversations whose packed context can be reused
    REMEMBER_S = 3600.0
    COVER_TOP = 3  # a follow-up reuses the context when its top hits are all inside it
    FALLBACK_S = 10.0  # how long an unreachable LLM is not asked again for its window

    def __init__(self, settings: Settings, runtime: Runtime | None = None,
                 llm: LLMClient | None = None):
        self.settings = settings
        self._own_runtime = runtime is None
        self.runtime = runtime or Runtime(settings)
        self._llm = llm
        self._served: Served | None = None
        self._retriever: Retriever | None = None
        self._lock = threading.RLock()
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()
        self._fallback: tuple[float, Served] | None = None

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
        if self._own_runtime:
            self.runtime.close()

    def __enter__(self) -> RagService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the served model -----------------------------------------------------------------
    @property
    def llm(self) -> LLMClient:
        with self._lock:  # two first requests must not start two CPU servers
            return self._make_llm()

    def _make_llm(self) -> LLMClient:
        if self._llm is None:
            s = self.settings.llm
            urls = list(s.urls) if s.urls else ([s.url] if s.url else [])
            if not urls:  # the embedded default: our llama.cpp server on this machine
                from serving.llamacpp import ensure_running

                urls = [ensure_running(self.settings.cpu_server)]
            self._llm = LLMClient(urls, s.api_key, s.model, s.timeout_s, s.connect_timeout_s,
                                  s.retries)
        return self._llm

    def _uses_cpu_default(self) -> bool:
        s = self.settings.llm
        return not s.url and not s.urls

    def _is_cpu_model(self, served_id: str) -> bool:
        """The served model is the cpu_server's GGUF (e.g. the compose cpu profile)."""
        from serving.llamacpp import model_path

        try:
            return served_id == model_path(self.settings.cpu_server).stem
        except SettingsError:
            return False

    def _counter(self, served_id: str | None) -> tuple[Any, ChatFormat]:
        """auto: the CPU server's GGUF tokenizer when that model is the one served (our
        embedded default, or the same GGUF behind a URL), else Llama 3.1's."""
        spec = self.settings.llm.tokenizer
        if spec == "auto":
            from serving.llamacpp import model_path

            spec = "llama3"
            if self._uses_cpu_default() or (served_id and self._is_cpu_model(served_id)):
                spec = str(model_path(self.settings.cpu_server))
        if spec == "llama3":
            counter: Any = load_tokenizer(self.settings.tokenizer.path)
            fmt: ChatFormat = "llama3"
        elif spec.endswith(".gguf"):
            counter = load_gguf_counter(str(Path(spec).expanduser()))
            fmt = counter.chat_format
        else:
            counter = load_tokenizer(str(Path(spec).expanduser()))
            fmt = "llama3"
        chosen = self.settings.llm.chat_format
        return counter, (fmt if chosen == "auto" else chosen)

    def served(self, require_server: bool = True) -> Served:
        """The served model, its window, tokenizer and template. Without `require_server`
        an unreachable server falls back to the configured window (retrieval needs no LLM)."""
        if self._served is not None:
            return self._served
        fallback = self._fallback
        if not require_server and fallback and time.monotonic() - fallback[0] < self.FALLBACK_S:
            return fallback[1]
        s = self.settings
        info: ModelInfo | None = None
        try:
            info = self.llm.model_info()
        except RagError:
            if require_server:
                raise
        counter, fmt = self._counter(info.id if info else None)
        if info and info.context_window:
            window, source = info.context_window, "server"
        elif s.llm.context_window:
            window, source = s.llm.context_window, "settings"
        elif self._uses_cpu_default() or (info is not None and self._is_cpu_model(info.id)):
            # Our llama.cpp server (llama-cpp-python reports no window): the cpu_server
            # settings it was started with; a smaller real window is learned on refusal.
            window, source = s.cpu_server.n_ctx, "cpu_server"
        else:
            window, source = s.retrieval.context_window, "settings"
        served = Served(info.id if info else (s.llm.model or "unknown"), window, source, counter,
                        fmt, info.url if info else None)
        if info is not None:
            self._served = served
        else:  # the LLM is down: retrieval goes on with the configured window for a while
            self._fallback = (time.monotonic(), served)
        return served

    def retriever(self, served: Served) -> Retriever:
        if self._retriever is None or self._retriever.counter is not served.counter:
            self._retriever = Retriever(self.settings, self.runtime.store, self.runtime.embedder(),
                                        served.counter, chat_format=served.chat_format)
        return self._retriever

    # -- retrieval only ---------------------------------------------------------------------
    def retrieve(self, question: str, options: RetrieveOptions | None = None,
                 history: tuple[Message, ...] = ()) -> Retrieval:
        """The packed context for the served model's window, without an answer."""
        question = _check_question(question)
        served = self.served(require_server=False)
        options = replace(options or RetrieveOptions(), history=tuple(history))
        with self._lock:
            return self._pack(question, search_query(question, options.history), options, served)

    def _pack(self, question: str, query: str, options: RetrieveOptions,
              served: Served) -> Retrieval:
        retriever = self.retriever(served)
        result = retriever.retrieve(query, options, context_window=served.context_window)
        if query != question:
            # The budget was counted for the search text; the prompt holds the question.
            result.budget = self._budget(result.budget, question, options.history, served)
            result.question = question
            if result.packing.used_tokens > result.budget.available:
                result = retriever.retrieve(question, replace(options), served.context_window)
        return result

    # -- answers ----------------------------------------------------------------------------
    def ask(self, question: str, history: tuple[Message, ...] = (),
            options: RetrieveOptions | None = None) -> Answer:
        for event in self.stream(question, history, options):
            if event.kind == "done" and event.answer is not None:
                return event.answer
        raise AssertionError("stream ended without an answer")  # pragma: no cover

    def stream(self, question: str, history: tuple[Message, ...] = (),
               options: RetrieveOptions | None = None) -> Iterator[Event]:
        question = _check_question(question)
        history = tuple(history)
        options = replace(options or RetrieveOptions(), history=history)
        served = self.served(require_server=True)
        query = search_query(question, history)
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        for attempt in range(2):
            with self._lock:
                retrieval, reused = self._context(question, query, options, served, history)
            # Consumers keep the last retrieval event: a server that turns out to have a
            # smaller window than it said (or than configured) gets the context packed again.
            yield Event("retrieval", retrieval=retrieval)
            messages = build_messages(retrieval.packing.context, question, history)
            prompt_tokens = self._prompt_tokens(served, messages)
            window = served.context_window
            if prompt_tokens >= window:
                raise PromptTooLongError(
                    f"the prompt needs {prompt_tokens:,} tokens but the model's window is "
                    f"{window:,}: shorten the conversation or the question", window)
            max_tokens = max(1, min(self.settings.retrieval.answer_reserve, window - prompt_tokens))
            try:
                for delta in self.llm.chat_stream(messages, max_tokens,
                                                  self.settings.llm.temperature):
                    if delta.text:
                        if first is None:
                            first = time.perf_counter() - started
                        parts.append(delta.text)
                        yield Event("delta", text=delta.text)
                    usage = delta.usage or usage
                    finish = delta.finish_reason or finish
                break
            except PromptTooLongError as exc:
                if attempt or parts or not exc.window or exc.window >= served.context_window:
                    raise
                served = replace(served, context_window=exc.window, window_source="server")
                self._served = served
        text = "".join(parts).strip()
        citations, invalid = cite(text, retrieval.packing.passages)
        answer = Answer(question, text, citations, invalid, retrieval,
                        _usage(usage, prompt_tokens, started, first), served.model, query,
                        reused, finish)
        self._remember(text, retrieval, options)
        yield Event("done", answer=answer)

    def _prompt_tokens(self, served: Served, messages: list[dict[str, str]]) -> int:
        c = served.counter
        return template_tokens(c, [m["role"] for m in messages], served.chat_format) + sum(
            c.count(m["content"]) for m in messages)

    def _context(self, question: str, query: str, options: RetrieveOptions, served: Served,
                 history: tuple[Message, ...]) -> tuple[Retrieval, bool]:
        """A follow-up about the same material keeps the previous packed context (same
        prompt prefix, so the server's prefix cache is reused); otherwise pack anew."""
        previous = self._recall(history, options)
        if previous is not None and self._covers(previous, query, options, served):
            budget = self._budget(previous.budget, question, history, served)
            packing = _keep_prefix(previous.packing, budget.available, served.counter)
            if packing is not None:
                return replace(previous, question=question, budget=budget, packing=packing,
                               seconds=0.0), True
        return self._pack(question, query, options, served), False

    @staticmethod
    def _budget(like: Budget, question: str, history: tuple[Message, ...],
                served: Served) -> Budget:
        """`like`'s request and reserve, for this question and conversation on `served`."""
        return compute_budget(
            like.requested, served.context_window, like.answer_reserve,
            prompt_overhead(served.counter, question, list(history), served.chat_format))

    def _covers(self, previous: Retrieval, query: str, options: RetrieveOptions,
                served: Served) -> bool:
        if previous.packing.mode == "full":
            return True  # every selected document is already there, whole
        hits = self.retriever(served).top_hits(query, options, previous.budget.available,
                                               self.COVER_TOP)
        inside = {(p.document_id, i) for p in previous.packing.passages
                  for i in range(p.first, p.last + 1)}
        return bool(hits) and all((h.chunk.document_id, h.chunk.index) in inside for h in hits)

    def _recall(self, history: tuple[Message, ...], options: RetrieveOptions) -> Retrieval | None:
        last = next((m for m in reversed(history) if m.role == "assistant"), None)
        if last is None:
            return None
        entry = self._remembered.get(_fingerprint(last.content))
        if entry is None or entry.expires < time.monotonic():
            return None
        same = replace(entry.options, history=()) == replace(options, history=())
        if not same or entry.generation != self.runtime.store.generation:
            return None
        return entry.retrieval

    def _remember(self, answer: str, retrieval: Retrieval, options: RetrieveOptions) -> None:
        if not answer:
            return
        with self._lock:
            key = _fingerprint(answer)
            self._remembered[key] = _Remembered(retrieval, options, self.runtime.store.generation,
                                                time.monotonic() + self.REMEMBER_S)
            self._remembered.move_to_end(key)
            while len(self._remembered) > self.REMEMBER:
                self._remembered.popitem(last=False)


def _keep_prefix(packing: Packing, available: int, counter: Any) -> Packing | None:
    """The previous context for a follow-up. The conversation grew, so it may no longer fit:
    then its last passages go (listed as left out), keeping the longest common prefix for
    the server's prefix cache. None when not even the first passage fits."""
    if packing.used_tokens <= available:
        return packing
    kept = list(packing.passages)
    dropped: list[Passage] = []
    while kept:
        used = counter.count(render(kept))
        if used <= available:
            left = [LeftOut("budget", p.document_id, p.source, p.page, p.first, p.tokens, p.score)
                    for p in reversed(dropped)]
            return replace(packing, passages=kept, left_out=packing.left_out + left,
                           used_tokens=used, budget=available, verified=True,
                           notes=[*packing.notes, f"follow-up: kept the previous context's first "
                                  f"{len(kept)} of {len(packing.passages)} passages"])
        dropped.append(kept.pop())
    return None


def _check_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise SettingsError("question: must not be empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise SettingsError(f"question: longer than {MAX_QUESTION_CHARS:,} characters")
    return question


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
