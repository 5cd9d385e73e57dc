"""The one entry from a question in a conversation to the packed context (retrieval/context.py),
on the real library corpus: the budget is counted once for the prompt's question, the search
text carries the previous question, and a follow-up on the same material keeps the context."""

from __future__ import annotations

from typing import Any

from retrieval.context import Contexts, search_query
from retrieval.prompt import Message, prompt_overhead
from retrieval.service import RetrieveOptions
from serving.served import Served

QUESTION = "How does the lighthouse keeper test the reserve batteries?"
FOLLOW_UP = "And how often does the lighthouse keeper test the reserve batteries?"


def _served(library: Any, window: int = 8192) -> Served:
    return Served("test-model", window, "settings", library.counter, "llama3", None)


def _contexts(library: Any) -> Contexts:
    return Contexts(library.settings, library.store, lambda: library.embedder)


def _options(**kw: Any) -> RetrieveOptions:
    return RetrieveOptions(**{"budget_tokens": 1500, "context_mode": "retrieve", **kw})


def test_a_first_question_packs_what_the_retriever_packs(library: Any) -> None:
    contexts = _contexts(library)
    got = contexts.build(_served(library), QUESTION, _options())
    want = library.retriever().retrieve(QUESTION, _options(), 8192)
    assert got.packing.context == want.packing.context and got.packing.passages
    assert got.budget == want.budget and got.budget.context_window == 8192
    assert (got.search_query, got.reused) == (QUESTION, False)


def test_a_follow_up_keeps_the_context_and_counts_its_budget_for_its_question(library: Any) -> None:
    contexts = _contexts(library)
    served = _served(library)
    first = contexts.build(served, QUESTION, _options())
    contexts.remember("The keeper tests them weekly [1].", first, _options())
    history = (Message("user", QUESTION), Message("assistant", "The keeper tests them weekly [1]."))
    follow = contexts.build(served, FOLLOW_UP, _options(history=history))
    assert follow.reused and first.packing.context.startswith(follow.packing.context)
    assert follow.search_query == search_query(FOLLOW_UP, history) != FOLLOW_UP
    assert follow.question == FOLLOW_UP
    # Counted once, for the prompt the model gets: this question after this conversation.
    assert follow.budget.prompt_tokens == prompt_overhead(library.counter, FOLLOW_UP,
                                                          list(history), "llama3")
    assert follow.packing.used_tokens <= follow.budget.available
    # Packed anew: without reuse, or with other options than the remembered context's.
    fresh = contexts.build(served, FOLLOW_UP, _options(history=history), reuse=False)
    assert not fresh.reused and fresh.search_query == follow.search_query
    assert fresh.budget == follow.budget  # the same budget, searched with the same text
    other = contexts.build(served, FOLLOW_UP, _options(history=history, layout="relevance"))
    assert not other.reused


def test_an_answer_never_remembered_is_no_follow_up(library: Any) -> None:
    contexts = _contexts(library)
    history = (Message("user", QUESTION), Message("assistant", "Something else entirely."))
    result = contexts.build(_served(library), FOLLOW_UP, _options(history=history))
    assert not result.reused and result.packing.passages

