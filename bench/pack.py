"""Latency of retrieve + pack to a 131,072-token budget on collections of 10k and 100k chunks,
side by side with llama-index's default retriever + `compact` response-synthesis packing.

Chunks are real text (essays cut by our chunker, repeated under new document ids until the
collection has N chunks) with real BM25 vectors; dense vectors are random unit vectors, since
latency does not depend on what they mean and embedding 100k chunks here would take hours.
Both sides use the same vectors, the same query embedding and the same candidate count.
Our store is closed after loading and opened again, as `rag api` opens it, so the timed
questions meet it as a running server does (its cached tiers warmed when it opens). The timed
part runs in a process of its own (as `rag api` does), whose peak RSS is reported with the
store's size on disk; the corpus is made batch by batch, so `--sizes 1000000 --no-baseline`
fits in memory.

    .venv/bin/python bench/pack.py --data ../shared/data/niah/essays --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project root on sys.path)
from _pack_serve import percentiles

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


def iter_corpus(data: Path, n_chunks: int, embedding: str, seed: int = 7, batch: int = 2000):
    """Batches of (payloads, texts, dense vectors) for n_chunks chunks of real text, made as
    they are needed: a million chunks never sit in memory at once."""
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
    made, copy = 0, 0
    while True:
        for name, chunks in base:
            doc_id = hashlib.sha256(f"{name}#{copy}".encode()).hexdigest()[:16]
            version = hashlib.sha256(doc_id.encode()).hexdigest()[:32]
            for c in chunks[:n_chunks - made]:
                payloads.append({**_payload(c, chunks, name, copy, doc_id, version, counter.name),
                                 "embedding": embedding})
                texts.append(c.core)
            made = min(n_chunks, made + len(chunks))
            if len(payloads) >= batch or made == n_chunks:
                dense = rng.standard_normal((len(payloads), 384)).astype("float32")
                dense /= np.linalg.norm(dense, axis=1, keepdims=True)
                yield payloads, texts, dense
                payloads, texts = [], []
            if made == n_chunks:
                return
        copy += 1


def _payload(c, chunks, name: str, copy: int, doc_id: str, version: str, tokenizer: str) -> dict:
    return {
        "document_id": doc_id, "source": f"/corpus/{copy:04d}/{name}",
        "title": name, "type": "text", "pages": None, "page": c.page,
        "section": c.section, "chunk_index": c.index, "text": c.text,
        "core_offset": c.core_offset, "char_start": c.char_start,
        "char_end": c.char_end, "tokens": c.tokens, "core_tokens": c.core_tokens,
        "end_tokens": c.end_tokens, "tokenizer": tokenizer,
        # Copies are distinct documents here, not duplicates to drop.
        "content_hash": f"{c.content_hash}-{copy}", "doc_hash": version,
        "doc_chunks": len(chunks), "doc_tokens": sum(x.core_tokens for x in chunks),
        "state": "live",
    }


def load_store(path: Path, batches, keep_texts: bool) -> tuple[list[str], Any]:
    """Writes the batches into a new Edge store through the product's own upsert and closes
    it; returns the texts and vectors when `keep_texts` (the llama-index baseline needs them).

    Each distinct text's BM25 vector is made once: the copies repeat the essays' chunks, and
    BM25 was a third of the load time at 3,000 chunks (0.4 ms a chunk). What is left is the
    upsert (about 0.25 ms a point) and the HNSW build in `optimize` (over 90% of the time from
    30k chunks up: random vectors are HNSW's worst case)."""
    import numpy as np

    from ingest.payload import point_id
    from ingest.sparse import SparseEncoder
    from ingest.store import PointIn, Sparse
    from ingest.store.edge import EdgeStore

    store = EdgeStore(path)
    store.ensure_collection(384)
    encoder = SparseEncoder()
    sparse: dict[str, Sparse] = {}
    texts: list[str] = []
    vectors: list = []
    log = BuildLog(path.name)
    for payloads, chunk_texts, dense in batches:
        points = []
        for p, vec in zip(payloads, dense, strict=True):
            keywords = sparse.get(p["text"]) or sparse.setdefault(p["text"], encoder.document(p["text"]))
            points.append(PointIn(point_id(p["document_id"], p["doc_hash"], p["chunk_index"]),
                                  vec.tolist(), keywords, p))
        with log.timed("upsert", len(points)):  # with the segment indexed when it is full
            store.upsert(points)
        if keep_texts:
            texts += chunk_texts
            vectors.append(dense)
    with log.timed("final optimize", 0):
        store.optimize()
    log.done(store)
    store.close()
    return texts, (np.concatenate(vectors) if vectors else [])


class BuildLog:
    """Prints the build's phases with the time of day and this process's CPU seconds (its
    threads' too: Edge's HNSW build runs on several): a line per 100k points upserted."""

    def __init__(self, name: str):
        self.name, self.points = name, 0
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def timed(self, phase: str, points: int) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        self.cpu[phase] = self.cpu.get(phase, 0.0) + time.process_time() - c0
        self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - t0
        before, self.points = self.points, self.points + points
        if self.points // 100_000 > before // 100_000 or not points:
            self.line(f"{self.points:,} points, {phase}")

    def line(self, what: str) -> None:
        phases = ", ".join(f"{k} {self.cpu[k]:.0f} CPU s / {self.wall[k]:.0f} s"
                           for k in self.cpu)
        print(f"pack.py: {time.strftime('%H:%M:%S')} {self.name}: {what} ({phases}; "
              f"{time.perf_counter() - self.started:.0f} s in all)", file=sys.stderr, flush=True)

    def done(self, store: Any) -> None:
        self.line(f"built: {store.shard.info().segments_count} segments")


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


def serve_child(root: Path, path: Path, budget: int, queries: list[str]) -> dict:
    """Runs the questions in a process of its own with `root`'s code (as `rag api` would)."""
    import subprocess

    child = subprocess.run([sys.executable, str(Path(__file__).with_name("_pack_serve.py")),
                            str(root), str(path), str(budget), *queries],
                           capture_output=True, text=True, cwd=root)
    if child.returncode:
        sys.exit(f"pack.py: the serving process ({root}) failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def build(path: Path, size: int, args: argparse.Namespace) -> tuple[float, list[str], Any]:
    """The store of `size` chunks at `path`, built unless `--keep` left one there."""
    from core.settings import load_settings
    from ingest.embedder import Embedder

    if (path / "edge_config.json").is_file() and args.no_baseline:
        return float("nan"), [], []
    t0 = time.perf_counter()
    # Recorded as the query embedder's, as an ingest with it would (the store refuses others).
    embedding = Embedder(load_settings().embedding).signature
    texts, dense = load_store(path, iter_corpus(args.data, size, embedding, batch=args.batch),
                              not args.no_baseline)
    return time.perf_counter() - t0, texts, dense


def measure_size(size: int, args: argparse.Namespace, queries: list[str]) -> dict:
    from core.settings import load_settings
    from ingest.embedder import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        path = (args.keep or Path(tmp)) / f"bench-{size}"
        load_s, texts, dense = build(path, size, args)
        disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        row = {"chunks": size, "load_s": round(load_s, 1), "disk_gib": disk / 2**30,
               **serve_child(_common.ROOT, path, args.budget, queries)}
        if args.before:
            before = serve_child(args.before.resolve(), path, args.budget, queries)
            row.update(before_p50_ms=before["ours_p50_ms"], before_p95_ms=before["ours_p95_ms"],
                       before_used=before["ours_used"], before_rss_gib=before["rss_gib"],
                       vs_before_p50=row["ours_p50_ms"] / before["ours_p50_ms"])
    if not args.no_baseline:
        embedder = Embedder(load_settings().embedding)
        li, li_used = bench_llama_index(texts, dense, embedder, args.budget, row["candidates"], queries)
        lp50, lp95 = percentiles(li)
        row.update(li_p50_ms=lp50 * 1000, li_p95_ms=lp95 * 1000, li_used=li_used,
                   speedup_p50=lp50 / (row["ours_p50_ms"] / 1000))
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of .txt files (the essays)")
    ap.add_argument("--sizes", default="10000,100000", help="collection sizes in chunks")
    ap.add_argument("--budget", type=int, default=131_072)
    ap.add_argument("--queries", type=int, default=len(QUESTIONS), help="questions per size")
    ap.add_argument("--no-baseline", action="store_true", help="skip llama-index")
    ap.add_argument("--out", type=Path, default=Path("bench/results/pack.json"))
    ap.add_argument("--before", type=Path, default=None,
                    help="another checkout (the code before a change) answering the same "
                         "questions on the same store, in a process of its own")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the stores in this folder and keep them; with --no-baseline a "
                         "store already there is reused")
    ap.add_argument("--batch", type=int, default=5000, help="points per upsert")
    args = ap.parse_args()

    queries = (QUESTIONS * 10)[: args.queries]
    rows = [measure_size(size, args, queries) for size in [int(s) for s in args.sizes.split(",")]]

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
    if args.before:
        print(f"\nthe same questions on the same store with {args.before} (p50 / p95 ms)")
        print(f"{'chunks':>8} {'now p50':>9} {'before p50':>11} {'now p95':>9} {'before p95':>11} "
              f"{'now / before p50':>17}")
        for r in rows:
            print(f"{r['chunks']:>8,} {r['ours_p50_ms']:>9.1f} {r['before_p50_ms']:>11.1f} "
                  f"{r['ours_p95_ms']:>9.1f} {r['before_p95_ms']:>11.1f} {r['vs_before_p50']:>16.2f}x")
    print(f"\n{'chunks':>9} {'load s':>7} {'open s':>7} {'disk GiB':>9} {'peak RSS GiB':>13} "
          f"{'over idle':>10}")
    for r in rows:
        print(f"{r['chunks']:>9,} {r['load_s']:>7.0f} {r['open_s']:>7.2f} {r['disk_gib']:>9.2f} "
              f"{r['rss_gib']:>13.2f} {r['rss_over_model_gib']:>10.2f}")
    print("targets: ours p50 <= 100 ms at 100k chunks; >= 5x the llama-index baseline; "
          "at 1M chunks p50 <= 150 ms and RSS <= 6 GiB")
    for r in rows:
        limit = 150 if r["chunks"] >= 1_000_000 else 100
        ok = r["ours_p50_ms"] <= limit and (r["chunks"] < 1_000_000 or r["rss_gib"] <= 6)
        verdict = "PASS" if r["chunks"] < 100_000 or ok else "FAIL"
        ratio = f", {r['speedup_p50']:.1f}x llama-index" if "speedup_p50" in r else ""
        print(f"  {r['chunks']:,} chunks: p50 {r['ours_p50_ms']:.1f} ms{ratio} "
              f"(store opened in {r['open_s']:.2f} s) {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
