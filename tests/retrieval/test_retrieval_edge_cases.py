"""Determinism, empty collections and questions that match nothing."""

from __future__ import annotations

import json

import pytest

from core.settings import load_settings
from ingest.store import open_store
from retrieval.service import Filters, RetrieveOptions, Retriever


def stable_json(result) -> str:
    d = result.to_dict(with_context=True)
    assert "seconds" in d
    d.pop("seconds")
    return json.dumps(d, sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize("options", [
    RetrieveOptions(budget_tokens=2000, context_mode="retrieve"),
    RetrieveOptions(budget_tokens=3000, layout="edges", search_mode="dense",
                    context_mode="retrieve", neighbours=2),
    RetrieveOptions(budget_tokens=3000, layout="relevance", search_mode="keyword",
                    context_mode="retrieve"),
    RetrieveOptions(budget_tokens=16384),
], ids=["hybrid", "dense-edges", "keyword-relevance", "auto-full"])
def test_same_input_gives_byte_identical_output(library, options):
    question = "How does the lighthouse keeper test the reserve batteries?"
    first = library.retriever().retrieve(question, options)
    again = library.retriever().retrieve(question, options)
    fresh = Retriever(library.settings, library.store, library.embedder,
                      library.counter).retrieve(question, options)
    assert first.packing.context
    assert first.packing.context.encode() == again.packing.context.encode()
    assert first.packing.context.encode() == fresh.packing.context.encode()
    assert stable_json(first) == stable_json(again) == stable_json(fresh)


@pytest.mark.slow
def test_large_retrieval_is_deterministic(haystack):
    question = "Who counted barrels in Dunmere during the harvest fair?"
    options = RetrieveOptions(budget_tokens=65536, context_mode="retrieve")
    a = haystack.retriever().retrieve(question, options)
    b = haystack.retriever().retrieve(question, options)
    assert a.packing.used_tokens > 50_000
    assert a.packing.context == b.packing.context
    assert stable_json(a) == stable_json(b)


def test_empty_collection_gives_a_clear_message(tmp_path, embedder, counter):
    settings = load_settings(data_dir=tmp_path)
    store = open_store(settings)
    try:
        assert not store.exists()
        for mode in ("auto", "full", "retrieve"):
            result = Retriever(settings, store, embedder, counter).retrieve(
                "Where are the lighthouse batteries?", RetrieveOptions(context_mode=mode))
            d = result.to_dict(with_context=True)
            assert d["passages"] == [] and d["context"] == "" and d["used_tokens"] == 0
            assert "collection is empty" in d["message"]
            assert "rag ingest" in d["message"]
            assert d["budget"]["available"] > 0
    finally:
        store.close()


def test_question_with_no_match_gives_a_clear_message(library):
    retriever = library.retriever()
    for question in ("xylophone quasar zeppelin", "the of and is"):
        result = retriever.retrieve(question, RetrieveOptions(search_mode="keyword",
                                                              context_mode="retrieve"))
        d = result.to_dict(with_context=True)
        assert d["passages"] == [] and d["context"] == ""
        assert d["used_tokens"] == 0 and d["candidates"] == 0
        assert d["message"] == "no passage matches the question"


def test_no_match_in_auto_mode_still_gives_the_documents_that_fit(library):
    """Whole-document mode does not depend on the question: the library fits, so it comes."""
    d = library.retriever().retrieve("xylophone quasar zeppelin", RetrieveOptions(
        search_mode="keyword", budget_tokens=16384)).to_dict()
    assert d["mode"] == "full"
    assert len(d["passages"]) == len(library.files)


def test_filter_matching_nothing_gives_a_clear_message(library):
    d = library.retriever().retrieve("Where are the batteries?", RetrieveOptions(
        filters=Filters(document_ids=("0000000000000000",)))).to_dict()
    assert d["passages"] == []
    assert d["message"] == "no document matches the filter"
    assert {x["reason"] for x in d["left_out"]} == {"filter"}
    assert len(d["left_out"]) == len(library.files)
