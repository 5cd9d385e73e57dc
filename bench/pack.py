"""Latency of retrieve + pack to a 131,072-token budget on collections of 10k and 100k chunks,
side by side with llama-index's default retriever + `compact` response-synthesis packing.

Chunks are real text (essays cut by our chunker, repeated under new document ids until the
collection has N chunks) with real BM25 vectors; dense vectors are random unit vectors, since
latency does not depend on what they mean and embedding 100k chunks here would take hours.
Both sides use the same vectors, the same query embedding and the same candidate count.
Our store is closed after loading and opened again, as `rag api` opens it, so the timed
questions meet it as a running server does (its cached tiers warmed when it opens).

    .venv/bin/python bench/pack.py --data ../shared/data/niah/essays --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project root on sys.path)

QUESTIONS = [
    "What is the best thing to do in San Francisco?",
    "How should founders think about fundraising?",
    "Why do startups fail?",
    "What makes a good programming language?",
    "How do you get startup ideas?",
    "What did the essay say about wealth creation?",
    "Why is it hard to be a good investor?",
    "What is the role of determination in startups?",
    "How does one write a good essay?",
    "What is the difference between a hacker and a painter?",
    "Why are cities important for ambitious people?",
    "How should a startup hire its first employees?",
]


def build_corpus(data: Path, n_chunks: int, seed: int = 7):
    """(payloads, texts, dense vectors) for n_chunks chunks of real text."""
    import hashlib

    import numpy as np

    from core.settings import load_settings
    from ingest.chunker import Chunker
    from ingest.loaders import load
    from ingest.tokenizer import load_tokenizer

    settings = load_settings()
    counter = load_tokenizer()
    chunker = Chunker(counter, settings.chunking.size, settings.chunking.overlap)
    base: list[tuple[str, list]] = []
    for path in sorted(data.glob("*.txt")):
        doc = load(path, path.read_bytes())
        base.append((path.name, chunker.split(doc.sections)))
    rng = np.random.default_rng(seed)
    payloads, texts = [], []
    copy = 0
    while len(payloads) < n_chunks:
        for name, chunks in base:
            doc_id = hashlib.sha256(f"{name}#{copy}".encode()).hexdigest()[:16]
            version = hashlib.sha256(doc_id.encode()).hexdigest()[:32]
            for c in chunks:
                payloads.append({
                    "document_id": doc_id, "source": f"/corpus/{copy:04d}/{name}",
                    "title": name, "type": "text", "pages": None, "page": c.page,
                    "section": c.section, "chunk_index": c.index, "text": c.text,
                    "core_offset": c.core_offset, "char_start": c.char_start,
                    "char_end": c.char_end, "tokens": c.tokens, "core_tokens": c.core_tokens,
                    "end_tokens": c.end_tokens, "tokenizer": counter.name,
                    # Copies are distinct documents here, not duplicates to drop.
                    "content_hash": f"{c.content_hash}-{copy}", "doc_hash": version,
                    "doc_chunks": len(chunks), "doc_tokens": sum(x.core_tokens for x in chunks),
                    "state": "live",
                })
                texts.append(c.core)
                if len(payloads) >= n_chunks:
                    break
            if len(payloads) >= n_chunks:
                break
        copy += 1
    dense = rng.standard_normal((len(payloads), 384)).astype("float32")
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    return payloads, texts, dense


def load_store(path: Path, payloads, dense) -> object:
    from ingest.payload import point_id
    from ingest.sparse import SparseEncoder
    from ingest.store import PointIn
    from ingest.store.edge import EdgeStore

    store = EdgeStore(path)
    store.ensure_collection(dense.shape[1])
    sparse = SparseEncoder()
    batch = []
    for p, vec in zip(payloads, dense, strict=True):
        pid = point_id(p["document_id"], p["doc_hash"], p["chunk_index"])
        batch.append(PointIn(pid, vec.tolist(), sparse.document(p["text"]), p))
        if len(batch) == 2000:
            store.upsert(batch)
            batch = []
    store.upsert(batch)
    store.optimize()
    return store


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def bench_ours(store, embedder, budget: int, queries: list[str]) -> tuple[list[float], int, int]:
    from core.settings import load_settings
    from ingest.tokenizer import load_tokenizer
    from retrieval.service import RetrieveOptions, Retriever

    settings = load_settings()
    retriever = Retriever(settings, store, embedder, load_tokenizer())
    options = RetrieveOptions(budget_tokens=budget, context_mode="retrieve")
    # Warm-up with a question not timed below (the retriever keeps the last query vector).
    retriever.retrieve("What do the essays say about painting?", options)
    times, used, cands = [], 0, 0
    for q in queries:
        t0 = time.perf_counter()
        result = retriever.retrieve(q, options)
        times.append(time.perf_counter() - t0)
        used, cands = result.packing.used_tokens, result.candidates
    return times, used, cands


def bench_llama_index(texts: list[str], dense, embedder, budget: int, top_k: int,
                      queries: list[str]) -> tuple[list[float], int]:
    from llama_index.core import Settings as LISettings
    from llama_index.core import VectorStoreIndex
    from llama_index.core.indices.prompt_helper import PromptHelper
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT
    from llama_index.core.schema import QueryBundle, TextNode

    from ingest.tokenizer import load_tokenizer

    tok = load_tokenizer().tokenizer

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    LISettings.tokenizer = encode
    LISettings.llm = None
    nodes = [TextNode(text=t, id_=str(i), embedding=v.tolist())
             for i, (t, v) in enumerate(zip(texts, dense, strict=True))]
    index = VectorStoreIndex(nodes, embed_model=_no_embed())
    retriever = index.as_retriever(similarity_top_k=top_k)
    helper = PromptHelper(context_window=budget, num_output=0, tokenizer=encode)
    times, used = [], 0
    for q in [queries[0], *queries]:
        t0 = time.perf_counter()
        bundle = QueryBundle(q, embedding=embedder.embed_query(q))
        found = retriever.retrieve(bundle)
        packed = helper.repack(DEFAULT_TEXT_QA_PROMPT, [n.get_content() for n in found])
        times.append(time.perf_counter() - t0)
        used = len(encode(packed[0])) if packed else 0
    return times[1:], used


def _no_embed():
    """llama-index wants an embed model to build an index even when every node carries its
    embedding and every query bundle brings its own."""
    from llama_index.core.embeddings import BaseEmbedding

    class NoEmbed(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            raise RuntimeError("query embeddings are passed in")

        async def _aget_query_embedding(self, query: str) -> list[float]:
            raise RuntimeError("query embeddings are passed in")

        def _get_text_embedding(self, text: str) -> list[float]:
            raise RuntimeError("node embeddings are precomputed")

    return NoEmbed(model_name="precomputed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of .txt files (the essays)")
    ap.add_argument("--sizes", default="10000,100000", help="collection sizes in chunks")
    ap.add_argument("--budget", type=int, default=131_072)
    ap.add_argument("--queries", type=int, default=len(QUESTIONS), help="questions per size")
    ap.add_argument("--no-baseline", action="store_true", help="skip llama-index")
    ap.add_argument("--out", type=Path, default=Path("bench/results/pack.json"))
    args = ap.parse_args()

    from core.settings import load_settings
    from ingest.embedder import Embedder
    from ingest.store.edge import EdgeStore

    embedder = Embedder(load_settings().embedding)
    queries = (QUESTIONS * 10)[: args.queries]
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        payloads, texts, dense = build_corpus(args.data, size)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            store = load_store(Path(tmp) / "bench", payloads, dense)
            load_s = time.perf_counter() - t0
            # Opened again, as `rag api` opens it at start: the open warms the store's
            # cached tiers (payloads, vectors) into the page cache.
            store.close()
            t0 = time.perf_counter()
            store = EdgeStore(Path(tmp) / "bench")
            open_s = time.perf_counter() - t0
            ours, used, cands = bench_ours(store, embedder, args.budget, queries)
            store.close()
        p50, p95 = percentiles(ours)
        row = {"chunks": size, "load_s": round(load_s, 1), "open_s": round(open_s, 2),
               "ours_p50_ms": p50 * 1000,
               "ours_p95_ms": p95 * 1000, "ours_used": used, "candidates": cands}
        if not args.no_baseline:
            li, li_used = bench_llama_index(texts, dense, embedder, args.budget, cands, queries)
            lp50, lp95 = percentiles(li)
            row.update(li_p50_ms=lp50 * 1000, li_p95_ms=lp95 * 1000, li_used=li_used,
                       speedup_p50=lp50 / p50)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    print(f"\nretrieve + pack to {args.budget:,} tokens, {len(queries)} questions "
          f"(p50 / p95 ms; used = tokens packed)")
    head = f"{'chunks':>8} {'ours p50':>9} {'ours p95':>9} {'used':>8}"
    if not args.no_baseline:
        head += f" {'llama-index p50':>16} {'p95':>8} {'used':>8} {'ratio p50':>10}"
    print(head)
    for r in rows:
        line = (f"{r['chunks']:>8,} {r['ours_p50_ms']:>9.1f} {r['ours_p95_ms']:>9.1f} "
                f"{r['ours_used']:>8,}")
        if "li_p50_ms" in r:
            line += (f" {r['li_p50_ms']:>16.1f} {r['li_p95_ms']:>8.1f} {r['li_used']:>8,} "
                     f"{r['speedup_p50']:>9.1f}x")
        print(line)
    print("targets: ours p50 <= 100 ms at 100k chunks; >= 5x the llama-index baseline")
    for r in rows:
        verdict = "PASS" if r["chunks"] < 100_000 or r["ours_p50_ms"] <= 100 else "FAIL"
        ratio = f", {r['speedup_p50']:.1f}x llama-index" if "speedup_p50" in r else ""
        print(f"  {r['chunks']:,} chunks: p50 {r['ours_p50_ms']:.1f} ms{ratio} "
              f"(store opened in {r['open_s']:.2f} s) {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
