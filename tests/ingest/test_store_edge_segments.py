"""Capped segments on a real Qdrant Edge store: many small writes leave no segment past
`segment_points`, a capped store answers exactly as one built in one go (below Edge's full-scan
threshold every search is exact), and a store made before the cap opens and takes it."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import fixtures_docs as F
import pytest

from core.choices import SearchMode
from ingest.payload import point_id
from ingest.sparse import SparseEncoder
from ingest.store import PointIn, PointOut, Where
from ingest.store.base import DENSE, SPARSE
from ingest.store.edge import EdgeStore, segment_kib

DIM = 16
CAP = 300


def points(n: int, seed: int = 3) -> list[PointIn]:
    """`n` chunks of distinct sentences: random unit vectors and real keyword vectors."""
    rng = random.Random(seed)
    encoder = SparseEncoder()
    out = []
    for i, text in enumerate(F.distinct_sentences(rng, n)):
        dense = [rng.gauss(0, 1) for _ in range(DIM)]
        norm = math.sqrt(sum(x * x for x in dense))
        doc = f"doc{i % 7}"
        out.append(PointIn(point_id(doc, "v1", i), [x / norm for x in dense],
                           encoder.document(text),
                           {"document_id": doc, "chunk_index": i, "text": text, "state": "live"}))
    return out


def write(path: Path, chunks: list[PointIn], batch: int, segment_points: int) -> EdgeStore:
    store = EdgeStore(path, segment_points=segment_points)
    store.ensure_collection(DIM)
    for start in range(0, len(chunks), batch):
        store.upsert(chunks[start:start + batch])
    store.optimize()  # as a finished ingest does
    return store


def segments(store: EdgeStore) -> int:
    assert store.shard is not None
    return int(store.shard.info().segments_count)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeStore, EdgeStore]]:
    """The same 1,000 chunks written 40 at a time under a 300-point cap, and in one go."""
    root = tmp_path_factory.mktemp("segments")
    chunks = points(1000)
    capped = write(root / "capped", chunks, batch=40, segment_points=CAP)
    whole = write(root / "whole", chunks, batch=1000, segment_points=100_000)
    yield capped, whole
    capped.close()
    whole.close()


def test_many_small_writes_keep_every_segment_under_the_cap(
        stores: tuple[EdgeStore, EdgeStore]) -> None:
    capped, whole = stores
    assert segments(capped) == math.ceil(1000 / CAP)  # 3 full segments and the rest
    assert segments(whole) == 1
    assert capped.count(Where()) == whole.count(Where()) == 1000
    config = json.loads((capped.path / "edge_config.json").read_text())
    assert config["optimizers"]["max_segment_size"] == segment_kib(CAP, DIM)


def untied(found: list[PointOut]) -> list[str]:
    """The hits whose score no other hit shares (tied hits come in either order)."""
    scores = [p.score for p in found]
    return [p.id for p in found if sum(abs(p.score - s) < 1e-4 for s in scores) == 1]


def above_last(found: list[PointOut]) -> set[str]:
    """The hits that score above the last one (those tied with it could be others)."""
    return {p.id for p in found if p.score > found[-1].score + 1e-4}


@pytest.mark.parametrize("mode", [SearchMode.DENSE, SearchMode.KEYWORD, SearchMode.HYBRID])
def test_a_capped_store_answers_as_one_built_in_one_go(
        stores: tuple[EdgeStore, EdgeStore], mode: SearchMode) -> None:
    capped, whole = stores
    encoder = SparseEncoder()
    for probe in points(1000)[::97]:
        words = encoder.query(probe.payload["text"])
        for where in (Where(), Where(equals={"document_id": "doc3"})):
            got = capped.query(dense=probe.dense, sparse=words, mode=mode, where=where, limit=20)
            want = whole.query(dense=probe.dense, sparse=words, mode=mode, where=where, limit=20)
            assert len(got) == 20
            assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=1e-4)
            assert untied(got) == untied(want)
            # Fused (RRF) scores are ranks and tie in pairs; the hits above the last tie agree.
            assert above_last(got) == above_last(want) and len(above_last(got)) >= 5


def test_a_store_made_before_the_cap_opens_and_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "old"
    chunks = points(900)
    old = EdgeStore(path, segment_points=100_000)
    q = old.q
    old.shard = q.EdgeShard.create(str(path), q.EdgeConfig(  # the config stores had before
        vectors={DENSE: q.EdgeVectorParams(size=DIM, distance=q.Distance.Cosine)},
        sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
        payload_memory=q.Memory.Cached))
    old.upsert(chunks[:300])
    old.optimize()
    old.close()

    store = EdgeStore(path, segment_points=CAP)
    try:
        config = json.loads((path / "edge_config.json").read_text())
        assert config["optimizers"]["max_segment_size"] == segment_kib(CAP, DIM)
        assert config["payload_memory"] == "cached" and config["vectors"][DENSE]["size"] == DIM
        assert store.count(Where()) == 300
        for start in range(300, 900, 50):
            store.upsert(chunks[start:start + 50])
        store.optimize()
        assert store.count(Where()) == 900 and segments(store) == 3
        found = store.retrieve([chunks[0].id, chunks[899].id])
        assert sorted(p.id for p in found) == sorted([chunks[0].id, chunks[899].id])
    finally:
        store.close()
