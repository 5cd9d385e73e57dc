"""Qdrant Edge and a Qdrant server (qdrant-client's local mode stands in for one) hold the
same data and answer the same queries alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from ingest.pipeline import ingest
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, Where
from ingest.store.server import ServerStore
from retrieval.service import RetrieveOptions, Retriever

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

QUESTIONS = [
    "How does the lighthouse keeper test the reserve batteries?",
    "When should the beekeeper add a honey super?",
    "How does the mechanic adjust the derailleur before each rental?",
    "What does the lock keeper do at high water?",
    "At what hydration does the baker shape the loaves?",
    "Who inspected the rusted anchor near the eastern quay?",
]
MODES = ["dense", "keyword", "hybrid"]
LIVE_ONLY = Where(equals={"state": LIVE})


@pytest.fixture(scope="module")
def server(library) -> Iterator[ServerStore]:
    from qdrant_client import QdrantClient

    store = ServerStore(QdrantClient(location=":memory:"), "docs")
    try:
        report = ingest(library.settings, library.files, store=store, embedder=library.embedder)
        assert report.count("new") == len(library.files)
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def vectors(library) -> dict[str, tuple[list[float], Any]]:
    sparse = SparseEncoder()
    return {q: (library.embedder.embed_query(q), sparse.query(q)) for q in QUESTIONS}


def _stable(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload less the ingestion time and mtime (compared apart: Edge gives the float
    back a few ulps off)."""
    return {k: v for k, v in payload.items() if k not in ("ingested_at", "mtime")}


def test_both_stores_hold_the_same_points(library, server):
    edge = {p.id: _stable(p.payload) for p in library.store.scroll(Where())}
    remote = {p.id: _stable(p.payload) for p in server.scroll(Where())}
    assert len(edge) > 50
    assert edge.keys() == remote.keys()
    differing = {(i, f): (edge[i].get(f), remote[i].get(f)) for i in edge
                 for f in edge[i].keys() | remote[i].keys() if edge[i].get(f) != remote[i].get(f)}
    assert not differing
    mtimes = {p.id: p.payload["mtime"] for p in server.scroll(Where())}
    for p in library.store.scroll(Where()):
        assert p.payload["mtime"] == pytest.approx(mtimes[p.id], abs=1e-5)
    assert library.store.count(LIVE_ONLY) == server.count(LIVE_ONLY) == len(edge)


def _rrf(*lists: list[Any], k: int = 60) -> dict[str, float]:
    fused: dict[str, float] = {}
    for points in lists:
        for rank, p in enumerate(points):
            fused[p.id] = fused.get(p.id, 0.0) + 1.0 / (k + rank)
    return fused


@pytest.mark.parametrize("mode", MODES)
def test_ids_only_queries_rank_as_full_ones(library, server, vectors, mode):
    """`with_payload=False` (the leaders' searches) finds the same points in the same
    order as a query with payloads, on both stores, and carries no payload."""
    dense, sparse = vectors[QUESTIONS[0]]
    for store in (library.store, server):
        full = store.query(dense=dense, sparse=sparse, mode=mode, where=LIVE_ONLY, limit=8)
        bare = store.query(dense=dense, sparse=sparse, mode=mode, where=LIVE_ONLY, limit=8,
                           with_payload=False)
        assert full and [p.id for p in bare] == [p.id for p in full]
        assert all(p.payload for p in full) and not any(p.payload for p in bare)


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_fused_query_repeats_exactly(library, server, vectors, question):
    """RRF ties (a hit of one list and the hit at the same rank of the other score the
    same) are ordered by id on both stores: Qdrant Edge by itself orders them differently
    from one query to the next, which moved a packed context between two identical asks."""
    dense, sparse = vectors[question]
    kw = dict(dense=dense, sparse=sparse, mode="hybrid", where=LIVE_ONLY, limit=8)
    runs = [[(p.id, p.score) for p in library.store.query(**kw)] for _ in range(6)]
    assert all(run == runs[0] for run in runs)
    assert [p.id for p in server.query(**kw)] == [i for i, _ in runs[0]]
    scores = [s for _, s in runs[0]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("question", QUESTIONS)
def test_top_results_agree(library, server, vectors, question, mode):
    dense, sparse = vectors[question]
    kw = dict(dense=dense, sparse=sparse, where=LIVE_ONLY, limit=10)
    a = library.store.query(mode=mode, **kw)
    b = server.query(mode=mode, **kw)
    assert len(a) == len(b) > 0
    # Same best hit, unless the two best are tied (then their order is free).
    if a[0].id != b[0].id:
        assert a[0].score == pytest.approx(a[1].score, rel=1e-3), (mode, question)
        assert {a[0].id, a[1].id} == {b[0].id, b[1].id}
    overlap = len({p.id for p in a} & {p.id for p in b})
    assert overlap >= 8, (mode, question, overlap)
    if mode == "hybrid":
        # Both fuse their own dense and keyword lists by RRF (k=60, ranks from 0); equal
        # keyword scores may be ranked in another order by each, so the fused scores of the
        # two stores are compared through their own lists.
        for store, fused in ((library.store, a), (server, b)):
            expected = _rrf(store.query(mode="dense", **kw), store.query(mode="keyword", **kw))
            for p in fused:
                assert p.score == pytest.approx(expected[p.id], abs=1e-6), (store.kind, p.id)
    else:
        # Cosine and BM25-with-IDF scores of the points both return are the same.
        score_b = {p.id: p.score for p in b}
        for p in a:
            if p.id in score_b:
                assert p.score == pytest.approx(score_b[p.id], rel=1e-3, abs=1e-5), (mode, p.id)


@pytest.mark.parametrize("mode", MODES)
def test_filters_agree(library, server, vectors, mode):
    dense, sparse = vectors[QUESTIONS[0]]
    docs = tuple(library.document_id(f) for f in library.files[1:3])
    where = LIVE_ONLY.and_(Where(any_of={"document_id": docs}))
    a = library.store.query(dense=dense, sparse=sparse, mode=mode, where=where, limit=20)
    b = server.query(dense=dense, sparse=sparse, mode=mode, where=where, limit=20)
    assert {p.payload["document_id"] for p in a} <= set(docs)
    assert {p.payload["document_id"] for p in b} <= set(docs)
    assert len({p.id for p in a} & {p.id for p in b}) >= 0.8 * max(len(a), len(b))


@pytest.mark.parametrize("mode", MODES)
def test_packed_contexts_agree(library, server, mode):
    edge = library.retriever()
    remote = Retriever(library.settings, server, library.embedder, library.counter)
    options = RetrieveOptions(budget_tokens=2500, context_mode="retrieve", search_mode=mode)
    for question in QUESTIONS[:3]:
        a = edge.retrieve(question, options).to_dict(with_context=True)
        b = remote.retrieve(question, options).to_dict(with_context=True)
        assert a["budget"] == b["budget"]
        chunks_a = {(p["document_id"], i) for p in a["passages"]
                    for i in range(p["chunks"][0], p["chunks"][1] + 1)}
        chunks_b = {(p["document_id"], i) for p in b["passages"]
                    for i in range(p["chunks"][0], p["chunks"][1] + 1)}
        assert chunks_a and chunks_b
        assert len(chunks_a & chunks_b) >= 0.85 * len(chunks_a | chunks_b), (mode, question)
        assert a["passages"][0]["document_id"] == b["passages"][0]["document_id"]


def test_whole_document_mode_is_identical(library, server):
    edge = library.retriever()
    remote = Retriever(library.settings, server, library.embedder, library.counter)
    options = RetrieveOptions(budget_tokens=16384)
    a = edge.retrieve(QUESTIONS[0], options).to_dict(with_context=True)
    b = remote.retrieve(QUESTIONS[0], options).to_dict(with_context=True)
    assert a["mode"] == b["mode"] == "full"
    assert a["context"] == b["context"]


def test_document_pages_agree(library, server):
    from ingest.documents import document_page, find_document, iter_documents, list_documents

    for store in (library.store, server):
        page = document_page(store, 2)
        assert len(page.documents) == 2 and page.next_cursor is not None
        assert page.total == len(library.files)
        assert sorted(d.document_id for d in iter_documents(store, batch=2)) == sorted(
            d.document_id for d in list_documents(store))
    edge, remote = list_documents(library.store), list_documents(server)
    assert [d.document_id for d in edge] == [d.document_id for d in remote]
    found = [find_document(s, edge[0].document_id) for s in (library.store, server)]
    assert [replace(d, ingested_at="") for d in found if d] == [replace(edge[0], ingested_at="")] * 2
    assert server.changes_since(0) is None  # others write a server: every read is whole
