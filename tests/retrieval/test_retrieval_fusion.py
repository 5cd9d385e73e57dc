"""Hybrid fusion keeps each search's leaders, and small budgets pack bare hits: the two
rules that put a keyword-only needle into a 4k context (bench/niah.py: 107 → 132 of 132)."""

from __future__ import annotations

import pytest
from retrieval_helpers import NEEDLES

from ingest.store import LIVE, Where
from retrieval.service import RetrieveOptions

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("needle", NEEDLES[:3], ids=["depth0", "depth25", "depth50"])
def test_each_searchs_top_hit_is_packed_at_a_small_budget(haystack, needle):
    _, _, question, _ = needle
    r = haystack.retriever()
    where = Where(equals={"state": LIVE})
    dense_top = haystack.store.query(dense=haystack.embedder.embed_query(question), sparse=None,
                                     mode="dense", where=where, limit=1)[0]
    keyword_top = haystack.store.query(dense=None, sparse=r.sparse.query(question),
                                       mode="keyword", where=where, limit=1)[0]
    result = r.retrieve(question, RetrieveOptions(budget_tokens=4096, search_mode="hybrid"))
    packed = {(p.document_id, i) for p in result.packing.passages for i in range(p.first, p.last + 1)}
    for top in (dense_top, keyword_top):
        assert (top.payload["document_id"], top.payload["chunk_index"]) in packed


def test_small_budgets_pack_bare_hits_and_say_so(haystack):
    question = NEEDLES[2][2]
    small = haystack.retriever().retrieve(question, RetrieveOptions(budget_tokens=4096))
    assert small.to_dict()["notes"] == [
        "neighbours 1 -> 0: the budget holds fewer than 8 widened passages"]
    # Bare hits: the same packing as asking for no neighbours (adjacent hits may still join
    # into one passage, so a passage can hold more than one chunk).
    bare = haystack.retriever().retrieve(question, RetrieveOptions(budget_tokens=4096,
                                                                   neighbours=0))
    assert [p.to_dict() for p in small.packing.passages] == \
        [p.to_dict() for p in bare.packing.passages]
    assert len(small.packing.passages) >= 4
    big = haystack.retriever().retrieve(question, RetrieveOptions(budget_tokens=32768))
    notes = big.to_dict()["notes"]  # neighbours kept; the coverage pass says what it did
    assert len(notes) == 1 and notes[0].startswith("coverage: the ")
    assert any(p.last > p.first for p in big.packing.passages)  # widened by neighbours
