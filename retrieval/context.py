"""The one entry from a question in a conversation to the packed context a served model
reads: the budget for its window, tokenizer and template (counted once, for the prompt the
model will get), the search text, and a follow-up's reuse of the previous context.

The answer service calls `Contexts.build` for a context and `Contexts.remember` once it has
an answer; everything between question and context happens here.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from core.settings import Settings
from ingest.store import Store
from retrieval.packer import LeftOut, Packing, Passage, render
from retrieval.prompt import Message
from retrieval.service import Retrieval, RetrieveOptions, Retriever
from serving.served import Served


def search_query(question: str, history: tuple[Message, ...]) -> str:
    """The text searched for: the question, plus the previous question when there is a
    conversation, so that "and how long does it take?" still finds its subject."""
    previous = [m.content for m in history if m.role == "user"][-1:]
    return "\n".join([*previous, question]) if previous else question


@dataclass
class _Remembered:
    retrieval: Retrieval
    options: RetrieveOptions
    generation: int
    expires: float


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:32]


class Contexts:
    """Packed contexts for a served model, and the recent ones a follow-up may reuse. Not
    thread-safe: the caller serialises store access (see app/runtime.py)."""

    REMEMBER = 256  # conversations whose packed context can be reused
    REMEMBER_S = 3600.0
    COVER_TOP = 3  # a follow-up reuses the context when its top hits are all inside it

    def __init__(self, settings: Settings, store: Store, embedder: Callable[[], Any]):
        self.settings = settings
        self.store = store
        self._embedder = embedder  # called when the first retriever is made
        self._retriever: Retriever | None = None
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()

    def retriever(self, served: Served) -> Retriever:
        """The retriever counting with the served model's tokenizer (made again when that
        changes)."""
        if self._retriever is None or self._retriever.counter is not served.counter:
            self._retriever = Retriever(self.settings, self.store, self._embedder(),
                                        served.counter, chat_format=served.chat_format)
        return self._retriever

    def build(self, served: Served, question: str, options: RetrieveOptions,
              reuse: bool = True) -> Retrieval:
        """The context for `question` after the conversation in `options.history`. With
        `reuse`, a follow-up about the same material keeps the previous answer's context
        (the same prompt prefix, so the server's prefix cache is reused)."""
        query = search_query(question, options.history)
        if reuse:
            kept = self._follow_up(served, question, query, options)
            if kept is not None:
                return kept
        result = self.retriever(served).retrieve(question, options, served.context_window,
                                                 search=query)
        result.search_query = query
        return result

    def remember(self, answer: str, retrieval: Retrieval, options: RetrieveOptions) -> None:
        """Keeps the context `answer` was given, for a follow-up that sends it back."""
        if not answer:
            return
        key = _fingerprint(answer)
        self._remembered[key] = _Remembered(retrieval, options, self.store.generation,
                                            time.monotonic() + self.REMEMBER_S)
        self._remembered.move_to_end(key)
        while len(self._remembered) > self.REMEMBER:
            self._remembered.popitem(last=False)

    def _follow_up(self, served: Served, question: str, query: str,
                   options: RetrieveOptions) -> Retrieval | None:
        previous = self._recall(options)
        if previous is None or not self._covers(previous, query, options, served):
            return None
        budget = self.retriever(served).budget_for(question, options.history,
                                                   previous.budget.requested,
                                                   served.context_window)
        packing = keep_prefix(previous.packing, budget.available, served.counter)
        if packing is None:
            return None
        return replace(previous, question=question, budget=budget, packing=packing, seconds=0.0,
                       search_query=query, reused=True)

    def _covers(self, previous: Retrieval, query: str, options: RetrieveOptions,
                served: Served) -> bool:
        if previous.packing.mode == "full":
            return True  # every selected document is already there, whole
        hits = self.retriever(served).top_hits(query, options, previous.budget.available,
                                               self.COVER_TOP)
        inside = {(p.document_id, i) for p in previous.packing.passages
                  for i in range(p.first, p.last + 1)}
        return bool(hits) and all((h.chunk.document_id, h.chunk.index) in inside for h in hits)

    def _recall(self, options: RetrieveOptions) -> Retrieval | None:
        last = next((m for m in reversed(options.history) if m.role == "assistant"), None)
        if last is None:
            return None
        entry = self._remembered.get(_fingerprint(last.content))
        if entry is None or entry.expires < time.monotonic():
            return None
        same = replace(entry.options, history=()) == replace(options, history=())
        if not same or entry.generation != self.store.generation:
            return None
        return entry.retrieval


def keep_prefix(packing: Packing, available: int, counter: Any) -> Packing | None:
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
