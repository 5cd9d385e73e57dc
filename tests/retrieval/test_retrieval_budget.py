"""The packed context never exceeds the budget, and fills it as far as material allows.

Every count is checked against the Llama tokenizer's own count of the final context text,
the exact string that goes into the prompt, by `tokenizers` itself as well as by the
counter's tiktoken copy of the same BPE."""

from __future__ import annotations

import pytest

from retrieval.prompt import (
    PASSAGES_HEADING,
    SYSTEM_INSTRUCTION,
    llama31_template_tokens,
    prompt_overhead,
)
from retrieval.service import RetrieveOptions

BUDGETS = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
QUESTION = "Which wagon did Borin repair near the old mill before noon?"
LIB_QUESTION = "How does the lighthouse keeper test the reserve batteries?"


def check_ledger(result, counter) -> dict:
    d = result.to_dict(with_context=True)
    assert counter.count(d["context"]) == d["used_tokens"]
    assert len(counter.tokenizer.encode(d["context"], add_special_tokens=False).ids) == \
        d["used_tokens"]
    assert d["used_tokens"] <= d["budget"]["available"]
    assert d["used_tokens"] == sum(p["tokens"] for p in d["passages"])
    assert d["budget"]["available"] == result.budget.available
    return d


@pytest.mark.slow
@pytest.mark.parametrize("budget", BUDGETS)
def test_haystack_context_never_exceeds_the_budget(haystack, counter, budget):
    retriever = haystack.retriever(answer_reserve=0 if budget <= 2048 else 1024)
    result = retriever.retrieve(QUESTION, RetrieveOptions(budget_tokens=budget,
                                                          context_mode="retrieve"))
    d = check_ledger(result, counter)
    assert d["mode"] == "retrieve"
    available = d["budget"]["available"]
    if budget >= 4096:
        # 142k tokens of material: retrieval mode fills the budget (losing at most a chunk).
        assert haystack.extra["tokens"] > available
        assert d["used_tokens"] >= 0.9 * available, (d["used_tokens"], available)
        assert len(d["passages"]) >= 3


@pytest.mark.parametrize("budget", BUDGETS[:5])
def test_small_budgets_fill_with_small_chunks(library, counter, budget):
    retriever = library.retriever(answer_reserve=0)
    result = retriever.retrieve(LIB_QUESTION, RetrieveOptions(budget_tokens=budget,
                                                              context_mode="retrieve"))
    d = check_ledger(result, counter)
    assert d["mode"] == "retrieve"
    assert d["passages"], d["message"]
    # 64-token chunks: what is left unused is less than one chunk and its header.
    assert d["used_tokens"] >= d["budget"]["available"] - 80
    assert d["used_tokens"] >= 0.5 * d["budget"]["available"]


def test_budget_is_the_smaller_of_request_and_window_less_reserve_and_prompt(library, counter):
    retriever = library.retriever(answer_reserve=700)
    overhead = prompt_overhead(counter, LIB_QUESTION)
    result = retriever.retrieve(LIB_QUESTION, RetrieveOptions(budget_tokens=4000),
                                context_window=3000)
    b = result.budget
    assert (b.requested, b.context_window, b.answer_reserve, b.prompt_tokens) == (
        4000, 3000, 700, overhead)
    assert b.available == 3000 - 700 - overhead
    check_ledger(result, counter)
    result = retriever.retrieve(LIB_QUESTION, RetrieveOptions(budget_tokens=2000),
                                context_window=3000)
    assert result.budget.available == 2000 - 700 - overhead


@pytest.mark.slow
def test_whole_prompt_fits_the_window(haystack, counter):
    """Template + instruction + context + question, rendered as Llama 3.1 chat text and
    counted in one go, stay inside the window minus the answer reserve."""
    window, reserve = 8192, 1024
    retriever = haystack.retriever(answer_reserve=reserve)
    result = retriever.retrieve(QUESTION, RetrieveOptions(budget_tokens=131072,
                                                          context_mode="retrieve"),
                                context_window=window)
    context = result.packing.context
    prompt = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        + SYSTEM_INSTRUCTION + PASSAGES_HEADING + context
        + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" + QUESTION
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    total = counter.count(prompt)
    assert total <= window - reserve
    assert result.packing.used_tokens >= 0.9 * result.budget.available
    # The overhead estimate is the template's true cost (within the few tokens BPE may
    # merge across the seams between parts).
    assert abs(total - (result.budget.prompt_tokens + result.packing.used_tokens)) <= 4
    assert llama31_template_tokens(counter, ["system", "user"]) > 0


def test_budget_too_small_for_anything_says_so(library, counter):
    result = library.retriever().retrieve(LIB_QUESTION, RetrieveOptions(budget_tokens=600))
    d = check_ledger(result, counter)
    assert d["budget"]["available"] == 0
    assert d["passages"] == [] and d["context"] == ""
    assert "budget too small" in d["message"]


def test_a_budget_left_empty_by_duplicates_searches_again_for_more(copies, counter):
    """Eight copies of one handbook: the first search's hits are mostly copies of each
    other (left out as duplicates), which leaves most of the budget empty; wider searches
    bring more of the handbook in until the budget is full."""
    options = RetrieveOptions(budget_tokens=3000, context_mode="retrieve")
    question = "How does the lighthouse keeper test the reserve batteries?"
    refilled = copies.retriever(answer_reserve=0).retrieve(question, options)
    once = copies.retriever(answer_reserve=0)
    once.REFILL_BELOW = 0.0  # never search again
    single = once.retrieve(question, options)
    d = check_ledger(refilled, counter)
    check_ledger(single, counter)
    assert single.packing.used_tokens < 0.9 * single.budget.available
    assert refilled.candidates > single.candidates
    assert refilled.packing.used_tokens >= 0.9 * refilled.budget.available
    assert {p["document_id"] for p in d["passages"]}  # still from the copies
    assert sum(x["reason"] == "duplicate" for x in d["left_out"]) > len(d["passages"])
