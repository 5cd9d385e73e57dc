"""Whole-document mode (auto and forced) and filters, on the small library corpus."""

from __future__ import annotations

import pytest

from core.errors import SettingsError
from retrieval.prompt import prompt_overhead
from retrieval.service import Filters, RetrieveOptions

QUESTION = "How does the beekeeper treat the colony for mites?"


def run(corpus, reserve=1024, **options):
    result = corpus.retriever(answer_reserve=reserve).retrieve(QUESTION,
                                                               RetrieveOptions(**options))
    return result.to_dict(with_context=True)


def by_source(corpus):
    return sorted(corpus.files, key=lambda f: str(f.resolve()))


def test_auto_uses_whole_documents_when_all_fit(library, counter):
    d = run(library, budget_tokens=16384)
    assert d["mode"] == "full"
    assert d["candidates"] == 0
    files = by_source(library)
    assert [p["document_id"] for p in d["passages"]] == [library.document_id(f) for f in files]
    for p, f in zip(d["passages"], files, strict=True):
        assert p["text"] == library.text_of(f)
        assert p["score"] is None
    # Every document's text appears whole, in that order, in the context.
    positions = [d["context"].index(library.text_of(f)) for f in files]
    assert positions == sorted(positions)
    assert d["left_out"] == []
    assert counter.count(d["context"]) == d["used_tokens"] <= d["budget"]["available"]


def test_auto_switches_to_retrieval_one_token_below_the_fit(library, counter):
    full = run(library, reserve=0, budget_tokens=16384)
    need = full["used_tokens"]
    overhead = prompt_overhead(counter, QUESTION)
    exact = run(library, reserve=0, budget_tokens=need + overhead)
    assert exact["budget"]["available"] == need
    assert exact["mode"] == "full"
    assert exact["context"] == full["context"]
    below = run(library, reserve=0, budget_tokens=need + overhead - 1)
    assert below["budget"]["available"] == need - 1
    assert below["mode"] == "retrieve"
    assert below["candidates"] > 0
    assert counter.count(below["context"]) == below["used_tokens"] <= need - 1
    # Retrieval still fills the budget with what is most relevant: the bees document first.
    assert below["passages"][0]["source"].endswith("bees.md")
    assert below["used_tokens"] >= 0.9 * (need - 1)


def test_full_mode_forced_packs_whole_documents_until_the_budget_ends(library, counter):
    d = run(library, reserve=0, budget_tokens=3000, context_mode="full")
    assert d["mode"] == "full"
    files = by_source(library)
    texts = {library.document_id(f): library.text_of(f) for f in files}
    kept = [p["document_id"] for p in d["passages"]]
    assert 1 <= len(kept) < len(files)
    for p in d["passages"]:
        assert p["text"] == texts[p["document_id"]]
    order = [library.document_id(f) for f in files]
    assert kept == [i for i in order if i in kept]
    left = [x for x in d["left_out"] if x["reason"] == "budget"]
    assert {x["document_id"] for x in left} == set(order) - set(kept)
    assert all(x["tokens"] > 0 for x in left)
    assert counter.count(d["context"]) == d["used_tokens"] <= d["budget"]["available"]


def test_retrieve_mode_forced_even_when_everything_fits(library):
    d = run(library, budget_tokens=16384, context_mode="retrieve")
    assert d["mode"] == "retrieve"
    assert d["candidates"] > 0
    assert all(p["score"] is not None for p in d["passages"])


def _filtered(library, filters, **options):
    d = run(library, budget_tokens=16384, filters=filters, **options)
    kept = {p["document_id"] for p in d["passages"]}
    filtered = {x["document_id"] for x in d["left_out"] if x["reason"] == "filter"}
    return d, kept, filtered


def test_filter_by_document_id(library):
    bees = library.document_id(library.root / "notes" / "bees.md")
    d, kept, filtered = _filtered(library, Filters(document_ids=(bees,)))
    assert d["mode"] == "full"
    assert kept == {bees}
    assert filtered == {library.document_id(f) for f in library.files} - {bees}


@pytest.mark.parametrize("pattern", ["{root}/notes/*", "{root}/notes/", "{root}/*/*.??.txt",
                                     "{root}/notes/*.[mt][dx]*"])
def test_filter_by_path_prefix_or_glob(library, pattern):
    path = pattern.format(root=library.root.resolve())
    notes = {library.document_id(library.root / "notes" / n) for n in ("bees.md", "river.txt")}
    d, kept, filtered = _filtered(library, Filters(path=path))
    if "??" in pattern:  # a glob that matches nothing
        assert kept == set()
        assert d["message"] == "no document matches the filter"
        assert len(filtered) == len(library.files)
        return
    assert kept == notes
    assert filtered == {library.document_id(f) for f in library.files} - notes


@pytest.mark.parametrize(("types", "names"), [
    (("markdown",), {"lighthouse.md", "bees.md"}),
    (("html", "text"), {"bicycles.html", "bread.txt", "river.txt"}),
    ((".HTML",), {"bicycles.html"}),
])
def test_filter_by_type(library, types, names):
    d, kept, filtered = _filtered(library, Filters(types=types))
    expected = {library.document_id(f) for f in library.files if f.name in names}
    assert kept == expected
    assert filtered == {library.document_id(f) for f in library.files} - expected


def test_filters_also_restrict_retrieval(library):
    river = library.document_id(library.root / "notes" / "river.txt")
    bread = library.document_id(library.root / "bread.txt")
    d, kept, filtered = _filtered(library, Filters(document_ids=(river, bread)),
                                  context_mode="retrieve")
    assert d["mode"] == "retrieve"
    assert kept and kept <= {river, bread}
    assert len(filtered) == len(library.files) - 2
    # The question is about bees, but no bee passage may slip through the filter.
    assert "beekeeper" not in d["context"]


def test_empty_question_is_refused(library):
    with pytest.raises(SettingsError, match="question"):
        library.retriever().retrieve("   ")
