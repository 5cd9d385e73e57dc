"""Layouts, neighbours and duplicates, end to end on real stores."""

from __future__ import annotations

import pytest
from retrieval_helpers import sentences_of

from retrieval.service import RetrieveOptions

QUESTION = "How does the lighthouse keeper test the reserve batteries and clean the lantern?"


def retrieve(corpus, layout="document", budget=1500, neighbours=None, question=QUESTION,
             **kw):
    options = RetrieveOptions(budget_tokens=budget, layout=layout, context_mode="retrieve",
                              neighbours=neighbours, **kw)
    return corpus.retriever(answer_reserve=0).retrieve(question, options).to_dict(
        with_context=True)


def groups(passages) -> list[str]:
    """Document ids in order of first appearance."""
    seen: list[str] = []
    for p in passages:
        if p["document_id"] not in seen:
            seen.append(p["document_id"])
    return seen


def test_document_layout_keeps_each_document_in_reading_order(library):
    d = retrieve(library, "document")
    passages = d["passages"]
    assert len(groups(passages)) >= 2, "the test needs passages from several documents"
    assert len(passages) >= 4
    order = groups(passages)
    # Each document's passages are contiguous and in increasing chunk order.
    blocks = [p["document_id"] for p in passages]
    assert blocks == sorted(blocks, key=order.index)
    for doc in order:
        chunks = [p["chunks"] for p in passages if p["document_id"] == doc]
        assert chunks == sorted(chunks)
    # Groups ordered by their best hit.
    best = [max(p["score"] for p in passages if p["document_id"] == doc) for doc in order]
    assert best == sorted(best, reverse=True)
    assert [p["label"] for p in passages] == list(range(1, len(passages) + 1))
    # The context is rendered in this order, labels included.
    positions = [d["context"].index(f"[{p['label']}] ") for p in passages]
    assert positions == sorted(positions)


def test_relevance_layout_orders_by_score(library):
    d = retrieve(library, "relevance")
    scores = [p["score"] for p in d["passages"]]
    assert len(scores) >= 4
    assert scores == sorted(scores, reverse=True)
    assert d["layout"] == "relevance"


def test_edges_layout_puts_best_first_and_second_best_last(library):
    d = retrieve(library, "edges")
    scores = [p["score"] for p in d["passages"]]
    assert len(scores) >= 3
    ranked = sorted(scores, reverse=True)
    assert scores[0] == ranked[0]
    assert scores[-1] == ranked[1]
    # Weakest in the middle: scores fall towards the middle from both ends.
    middle = scores.index(min(scores))
    assert 0 < middle < len(scores) - 1 or len(scores) == 3


def test_layouts_differ_only_in_order(library):
    packs = {layout: retrieve(library, layout) for layout in ("document", "relevance", "edges")}
    keyset = {frozenset((p["document_id"], tuple(p["chunks"])) for p in d["passages"])
              for d in packs.values()}
    assert len(keyset) == 1
    assert len({d["used_tokens"] for d in packs.values()}) == 1


@pytest.mark.parametrize("neighbours", [0, 1, 3])
def test_neighbours_merge_without_overlap_or_repeated_text(library, counter, neighbours):
    d = retrieve(library, "document", budget=2500, neighbours=neighbours)
    passages = d["passages"]
    assert passages
    by_doc: dict[str, list[list[int]]] = {}
    for p in passages:
        by_doc.setdefault(p["document_id"], []).append(p["chunks"])
    for runs in by_doc.values():
        runs.sort()
        for (_, hi), (lo, _) in zip(runs, runs[1:], strict=False):
            assert hi + 1 < lo, f"runs {runs} overlap or touch but were not merged"
    sentences = sentences_of(d["context"])
    assert len(sentences) == len(set(sentences))
    assert counter.count(d["context"]) == d["used_tokens"]
    if neighbours:
        # Widened passages: most span more than the hit itself, when every hit is widened in
        # rank order (coverage 0; with coverage, the best hits go in bare first).
        widened = library.retriever(answer_reserve=0, coverage=0).retrieve(QUESTION, RetrieveOptions(
            budget_tokens=2500, context_mode="retrieve", neighbours=neighbours)).to_dict()
        spans = [p["chunks"] for p in widened["passages"]]
        assert sum(hi > lo for lo, hi in spans) >= len(spans) // 2
        assert sum(hi > lo for lo, hi in (p["chunks"] for p in passages)) >= 1


def test_passage_text_is_the_stored_document_text(library):
    d = retrieve(library, "document", budget=2500)
    texts = {library.document_id(f): library.text_of(f) for f in library.files}
    for p in d["passages"]:
        assert p["text"] in texts[p["document_id"]]
        assert p["text"] in d["context"]


def test_duplicate_file_goes_in_once(twins, counter):
    original = twins.document_id(twins.extra["original"])
    copy = twins.document_id(twins.extra["copy"])
    d = retrieve(twins, "document", budget=2500, neighbours=2,
                 question="How does the relief keeper check the rotating lamp?")
    in_context = {p["document_id"] for p in d["passages"]}
    assert len(in_context & {original, copy}) == 1, "exactly one copy of the handbook is in"
    duplicates = [x for x in d["left_out"] if x["reason"] == "duplicate"]
    assert duplicates
    out_copy = ({original, copy} - in_context).pop()
    assert {x["document_id"] for x in duplicates} == {out_copy}
    sentences = sentences_of(d["context"])
    assert len(sentences) == len(set(sentences)), "duplicated text in the context"
    assert counter.count(d["context"]) == d["used_tokens"]


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_whole_documents_carry_a_copied_file_once(twins, counter, mode):
    original = twins.document_id(twins.extra["original"])
    copy = twins.document_id(twins.extra["copy"])
    other = twins.document_id(twins.extra["other"])
    result = twins.retriever().retrieve("How does the relief keeper check the rotating lamp?",
                                        RetrieveOptions(budget_tokens=131_072, context_mode=mode))
    d = result.to_dict(with_context=True)
    assert d["mode"] == "full"
    # The first by path: handbook-copy.md sorts before handbook.md.
    assert {p["document_id"] for p in d["passages"]} == {copy, other}
    assert [(x["reason"], x["document_id"]) for x in d["left_out"]] == [("duplicate", original)]
    sentences = sentences_of(d["context"])
    assert len(sentences) == len(set(sentences)), "duplicated text in the context"
    assert counter.count(d["context"]) == d["used_tokens"]


@pytest.mark.parametrize("layout", ["document", "relevance", "edges"])
@pytest.mark.parametrize("budget", [800, 4000])
def test_copies_never_repeat_text_whatever_the_budget(twins, layout, budget):
    for question in ("How does the relief keeper check the rotating lamp?",
                     "When does the night watch inspect the fog horn?",
                     "How do bakers shape the loaves?"):
        d = retrieve(twins, layout, budget=budget, neighbours=2, question=question)
        sentences = sentences_of(d["context"])
        assert len(sentences) == len(set(sentences)), (question, layout, budget)
