"""Needles in a ~142k-token haystack: one sentence found at every depth, inside the packed
context, by hybrid and by keyword search, at small and large budgets."""

from __future__ import annotations

import pytest
from retrieval_helpers import NEEDLES, sentences_of

from retrieval.service import RetrieveOptions

pytestmark = pytest.mark.slow


def test_haystack_is_long_and_needles_sit_at_their_depths(haystack):
    assert haystack.extra["tokens"] > 140_000
    flat = haystack.extra["sentences"]
    for depth, sentence, *_ in NEEDLES:
        assert flat.count(sentence) == 1
        assert abs(flat.index(sentence) / (len(flat) - 1) - depth) < 0.001
    assert haystack.text_of(haystack.files[0]).startswith(NEEDLES[0][1])
    assert haystack.text_of(haystack.files[-1]).endswith(NEEDLES[-1][1])


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
@pytest.mark.parametrize("budget", [4096, 16384])
@pytest.mark.parametrize("needle", NEEDLES, ids=[f"depth{int(n[0] * 100)}" for n in NEEDLES])
def test_needle_is_in_the_packed_context(haystack, counter, needle, budget, mode):
    depth, sentence, question, answer = needle
    result = haystack.retriever().retrieve(question, RetrieveOptions(
        budget_tokens=budget, search_mode=mode))
    d = result.to_dict(with_context=True)
    assert d["mode"] == "retrieve"  # 142k tokens never fit: auto falls back to retrieval
    assert sentence in d["context"], f"needle at depth {depth:.0%} missing"
    holding = [p for p in d["passages"] if sentence in p["text"]]
    assert len(holding) == 1
    assert answer in holding[0]["text"]
    assert counter.count(d["context"]) == d["used_tokens"] <= d["budget"]["available"]
    sentences = sentences_of(d["context"])
    assert len(sentences) == len(set(sentences))


def test_needle_passage_ranks_first_in_relevance_layout(haystack):
    for _, sentence, question, _ in NEEDLES:
        result = haystack.retriever().retrieve(question, RetrieveOptions(
            budget_tokens=8192, layout="relevance", search_mode="keyword"))
        assert sentence in result.packing.passages[0].text, question
