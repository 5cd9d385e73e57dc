"""The document calls at 100k documents: listing, delete by id, and the manifest a question
reads after a write, on a real Edge store, against the code before they were paged (a full
read of every document's first chunk, text included, per call) in the same run.

The documents are small (one chunk each by default, short text, random unit vectors, real
BM25 vectors), written straight into the store with the product's upsert: building 100k
takes about a minute here; no HNSW is built (none of these calls searches).

    .venv/bin/python bench/documents.py --docs 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _format import table, write_results

DIM = 384


def build(path: Path, docs: int, chunks: int, batch: int = 5000) -> Any:
    import numpy as np

    from ingest.payload import ChunkPayload, point_id
    from ingest.sparse import SparseEncoder
    from ingest.store import LIVE, PointIn
    from ingest.store.edge import EdgeStore

    store = EdgeStore(path)
    store.ensure_collection(DIM)
    encoder = SparseEncoder()
    rng = np.random.default_rng(7)
    points: list[PointIn] = []
    for n in range(docs):
        doc_id = f"{n:016x}"
        for i in range(chunks):
            text = (f"Note {n}, part {i}: minutes of meeting {n % 997} about budget line "
                    f"{n % 89}, the roof repair and the {n % 13}th supplier's invoice. " * 3)
            payload = ChunkPayload(
                document_id=doc_id, source=f"/notes/{n % 100:02d}/note-{n:06d}.txt",
                title=f"note {n}", type="text", chunk_index=i, text=text, tokens=60,
                core_tokens=60, end_tokens=61, doc_hash="v1", doc_chunks=chunks,
                doc_tokens=60 * chunks, ingested_at="2026-12-01T00:00:00+00:00",
                state=LIVE).to_payload()
            vec = rng.standard_normal(DIM).astype("float32")
            points.append(PointIn(point_id(doc_id, "v1", i), (vec / np.linalg.norm(vec)).tolist(),
                                  encoder.document(text), payload))
        if len(points) >= batch or n == docs - 1:
            store.upsert(points)
            points = []
    return store


def listing_before(store: Any) -> list[Any]:
    """The listing as it was: every first chunk's whole payload, text included, sorted."""
    from ingest.documents import DocumentInfo
    from ingest.payload import ChunkPayload, first_chunks

    entries = [ChunkPayload.from_payload(p.payload).manifest_entry()
               for p in store.scroll(first_chunks())]
    return sorted((DocumentInfo.of(e) for e in entries), key=lambda d: (d.source, d.document_id))


def delete_before(store: Any, document_id: str) -> None:
    """Delete as it was: the whole listing read to resolve the id, then the filter deletes."""
    from ingest.store import Where

    by_id = {d.document_id: d for d in listing_before(store)}
    doc = by_id[document_id]
    store.delete(Where(equals={"document_id": doc.document_id}))
    store.delete(Where(equals={"parent": doc.document_id}))


def timed(call: Callable[[], Any], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


class Writer:
    """One new live document per call, as a committed upload leaves it."""

    def __init__(self, store: Any):
        self.store, self.n = store, 0

    def __call__(self) -> None:
        from ingest.payload import ChunkPayload, point_id
        from ingest.store import LIVE, PointIn, Sparse

        self.n += 1
        doc_id = f"new{self.n:013x}"
        payload = ChunkPayload(document_id=doc_id, source=f"/new/{self.n}.txt", chunk_index=0,
                               text="new", doc_hash="v1", state=LIVE).to_payload()
        self.store.upsert([PointIn(point_id(doc_id, "v1", 0), [1.0] + [0.0] * (DIM - 1),
                                   Sparse([], []), payload)])


def measure(store: Any, docs: int, runs: int) -> list[list[Any]]:
    from ingest.documents import delete_document, document_page, list_documents
    from ingest.manifest import Manifest, order
    from ingest.payload import manifest

    write = Writer(store)
    kept = Manifest(store)
    kept.entries()

    def manifest_before() -> None:
        write()
        sorted(manifest(store), key=order)  # what a question read after every write

    def manifest_now() -> None:
        write()
        kept.entries()

    victims = iter(f"{n:016x}" for n in range(docs))
    rows = [
        ("list every document", timed(lambda: listing_before(store), runs),
         timed(lambda: list_documents(store), runs)),
        ("list one page of 100 (API, UI)", timed(lambda: listing_before(store), runs),
         timed(lambda: document_page(store, 100), runs)),
        ("delete one document by id", timed(lambda: delete_before(store, next(victims)), runs),
         timed(lambda: delete_document(store, next(victims)), runs)),
        ("a question's manifest after a write", timed(manifest_before, runs),
         timed(manifest_now, runs)),
    ]
    assert kept.full_reads == 1, "the kept manifest read everything again"
    out = []
    for what, before, now in rows:
        b, n = statistics.median(before) * 1000, statistics.median(now) * 1000
        out.append([what, f"{b:.1f}", f"{n:.2f}", f"{b / n:.0f}x"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000, help="documents in the store")
    ap.add_argument("--chunks", type=int, default=1, help="chunks per document")
    ap.add_argument("--runs", type=int, default=5, help="timed calls per row (median)")
    ap.add_argument("--out", type=Path, default=_common.RESULTS / "documents.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build(Path(tmp) / "docs", args.docs, args.chunks)
        built = time.perf_counter() - t0
        print(f"{args.docs:,} documents ({args.docs * args.chunks:,} points) written in "
              f"{built:.0f} s", file=sys.stderr)
        rows = measure(store, args.docs, args.runs)
        store.close()
    print(f"\n{args.docs:,} documents on Edge: median ms of {args.runs} calls "
          "(before: every document's first chunk read whole per call)")
    print(table(["call", "before ms", "now ms", "before / now"], rows))
    write_results(args.out, {"docs": args.docs, "chunks": args.chunks, "build_s": built,
                             "rows": rows, "environment": _common.environment()})


if __name__ == "__main__":
    main()
