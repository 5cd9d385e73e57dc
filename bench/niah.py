"""Needle in a haystack through the real pipeline: is the needle sentence inside the packed
context, for every haystack size x needle depth x context budget?

The haystack is the Paul Graham essays (sorted by file name, joined by blank lines) cut at
sentence boundaries into slices of about --slice-tokens Llama-3 tokens, repeated in order
until the haystack holds --sizes tokens, and written as one text file per slice
(h00000.txt, h00001.txt, ... so the documents have an order). Repeated slices are the same
files' worth of text, so their chunks are embedded once (the embedder here remembers every
distinct chunk text, across collections and, in the --work folder, across runs).

Each size is its own collection, ingested once. For each depth d the needle sentence from
needle.json is inserted at the sentence boundary at or before d% of the haystack's tokens,
which changes one slice file; the incremental pipeline then re-chunks only that file, and the
next depth puts the slice back as it was. The question from needle.json is asked at every
budget, and a cell passes when the needle sentence is a substring of the packed context
(Retrieval.to_dict(with_context=True)["context"]).

    .venv/bin/python bench/niah.py --data ../shared/data/niah
    .venv/bin/python bench/niah.py --data ../shared/data/niah --sizes 8k,1M --depths 0,50,100

Sizes and budgets accept k = 1,024 and M = 1,048,576 (128k = the 131,072-token window).
The budget is the requested one: the packer fills min(budget, window) - answer reserve
(1,024 by default) - prompt tokens. With --answer, the cells up to --answer-max-budget are
also answered by the LLM (the app's prompt, the packed context) and checked for "Dolores Park".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    CachingEmbedder,
    Reporter,
    bench_settings,
    environment,
    log,
    median_ms,
    p95_ms,
    parse_tokens,
    short_tokens,
    table,
    write_if_changed,
    write_results,
)

# After a sentence's closing punctuation (and quotes), before the whitespace that follows.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s)")


# -- the haystack ----------------------------------------------------------------------------
def base_slices(essays: Path, counter: Any, slice_tokens: int) -> list[str]:
    """The essays as one stream cut at sentence / paragraph boundaries into slices."""
    from ingest.chunker import Chunker
    from ingest.loaders import Section, load

    files = sorted(p for p in essays.glob("*.txt") if p.is_file())
    if not files:
        raise SystemExit(f"no .txt essays in {essays}")
    stream = "\n\n".join("\n\n".join(s.text for s in load(p, p.read_bytes()).sections)
                         for p in files)
    chunker = Chunker(counter, size=slice_tokens, overlap=0)
    slices = [c.core.strip() for c in chunker.split([Section(stream)])]
    return [s for s in slices if s]


def cut_tokens(text: str, counter: Any, n: int) -> str:
    """The longest prefix of `text` with at most about `n` tokens that ends a sentence."""
    starts = counter.token_starts(text)
    if n >= len(starts):
        return text
    limit = starts[n]
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, limit)]
    return text[:ends[-1]].strip() if ends else ""


def haystack(base: list[str], counts: list[int], counter: Any, size: int) -> list[str]:
    """Base slices repeated in order until `size` tokens; the last one cut to fit."""
    out: list[str] = []
    total = 0
    i = 0
    while total < size:
        text, n = base[i % len(base)], counts[i % len(base)]
        if total + n > size:
            text = cut_tokens(text, counter, size - total)
            if not text:
                break
            n = counter.count(text)
        out.append(text)
        total += n
        i += 1
    return out


def needle_position(slices: list[str], counts: list[int], counter: Any,
                    depth: float) -> tuple[int, int, float]:
    """(slice index, character offset, actual depth %) of the sentence boundary at or before
    `depth`% of the haystack's tokens."""
    total = sum(counts)
    if depth >= 100:
        return len(slices) - 1, len(slices[-1]), 100.0
    target = round(total * depth / 100)
    before = 0
    i = 0
    while i < len(counts) - 1 and before + counts[i] <= target:
        before += counts[i]
        i += 1
    text = slices[i]
    starts = counter.token_starts(text)
    local = target - before
    char = starts[local] if local < len(starts) else len(text)
    ends = [0] + [m.end() for m in _SENTENCE_END.finditer(text, 0, char + 1) if m.end() <= char]
    pos = ends[-1]
    actual = 100.0 * (before + counter.count(text[:pos])) / total
    return i, pos, actual


# -- diagnostics -----------------------------------------------------------------------------
def needle_ranks(retriever: Any, store: Any, question: str, sentence: str, limit: int,
                 modes: tuple[str, ...] = ("hybrid", "dense", "keyword")) -> dict[str, Any]:
    """Where the chunk whose own text (core) holds the needle ranks in each search mode when
    `limit` results are fetched: raw rank (1 = first) and rank among distinct chunk texts
    (repeated essays give many identical chunks, which the packer keeps once). Hybrid ranks
    depend on the limit: it is also the size of each of the two RRF prefetches."""
    from ingest.store import LIVE, Where

    out: dict[str, Any] = {}
    dense = retriever.embedder.embed_query(question)
    sparse = retriever.sparse.query(question)
    for mode in modes:
        points = store.query(dense=dense if mode != "keyword" else None,
                             sparse=sparse if mode != "dense" else None, mode=mode,
                             where=Where(equals={"state": LIVE}), limit=limit,
                             rrf_k=retriever.settings.retrieval.rrf_k)
        seen: set[str] = set()
        rank = distinct = None
        for n, p in enumerate(points, start=1):
            seen.add(p.payload.get("content_hash", p.id))
            core = p.payload.get("text", "")[int(p.payload.get("core_offset", 0)):]
            if sentence in core:
                rank, distinct = n, len(seen)
                break
        out[mode] = {"rank": rank, "distinct_rank": distinct, "searched": len(points)}
    return out


def explain_miss(result: Any, cell_rank: dict[str, Any], overall: dict[str, Any],
                 mode: str) -> str:
    """One line on why a cell missed."""
    d = result.to_dict()
    if d["mode"] == "full":
        return "whole-document mode left the needle's document out (budget)"
    ranks = "/".join(str(overall[m]["rank"] or "-") for m in ("hybrid", "dense", "keyword"))
    if cell_rank.get("rank") is None:
        return (f"needle chunk not among the {result.candidates} {mode} candidates "
                f"(ranks with a {overall['hybrid']['searched']}-result search, h/d/k: {ranks})")
    budget_out = sum(1 for x in d["left_out"] if x.get("reason") == "budget")
    return (f"needle chunk is candidate {cell_rank['rank']} (distinct {cell_rank['distinct_rank']}) "
            f"of {result.candidates}, but the {d['budget']['available']:,} available tokens went to "
            f"the hits before it and their neighbours ({len(d['passages'])} passages; "
            f"{budget_out} hits left out for budget)")


# -- the run ---------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="the niah folder (essays/ and needle.json), e.g. ../shared/data/niah")
    ap.add_argument("--sizes", default="8k,32k,128k,1M",
                    help="haystack sizes in Llama-3 tokens (default: %(default)s)")
    ap.add_argument("--depths", default="0,10,20,30,40,50,60,70,80,90,100",
                    help="needle depths in %% of the haystack (default: %(default)s)")
    ap.add_argument("--budgets", default="4k,16k,128k",
                    help="requested context budgets in tokens (default: %(default)s)")
    ap.add_argument("--slice-tokens", type=int, default=2048,
                    help="tokens per haystack file (default: %(default)s)")
    from core.choices import ContextMode, SearchMode, names

    ap.add_argument("--search-mode", choices=names(SearchMode), default=None,
                    help="search mode (default: the settings', hybrid)")
    ap.add_argument("--context-mode", choices=names(ContextMode), default="auto",
                    help="auto (the default, as the product runs) packs whole documents when "
                         "the whole haystack fits the budget (cells marked ok*); retrieve always "
                         "searches")
    ap.add_argument("--repeat", type=int, default=3,
                    help="retrievals per cell; latency is their median (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=RESULTS / "cache" / "niah",
                    help="scratch folder for haystack files, stores and the embedding cache; "
                         "kept between runs so reruns skip ingestion (default: %(default)s); "
                         "'temp' for a temporary folder")
    ap.add_argument("--fresh", action="store_true", help="empty --work first")
    ap.add_argument("--answer", action="store_true",
                    help="also ask the LLM (RAG_LLM__URL, else the CPU llama.cpp server) for the "
                         "cells whose budget is at most --answer-max-budget, and check that the "
                         "answer names Dolores Park")
    ap.add_argument("--answer-max-budget", default="4k",
                    help="largest budget whose cells are answered (SmolLM2 reads 8k tokens)")
    ap.add_argument("--out", type=Path, default=RESULTS / "niah.json",
                    help="results JSON (default: %(default)s)")
    args = ap.parse_args()

    needle_file = args.data / "needle.json"
    essays = args.data / "essays"
    if not needle_file.is_file() or not essays.is_dir():
        ap.error(f"--data {args.data}: expected essays/ and needle.json inside")
    import json

    spec = json.loads(needle_file.read_text())
    needle: str = spec["needle"]
    sentence = needle.strip()
    question: str = spec["retrieval_question"]
    sizes = [parse_tokens(s) for s in args.sizes.split(",") if s.strip()]
    depths = [float(d) for d in args.depths.split(",") if d.strip()]
    budgets = [parse_tokens(b) for b in args.budgets.split(",") if b.strip()]
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    temp = None
    work: Path = args.work
    if str(work) == "temp":
        temp = tempfile.TemporaryDirectory(prefix="niah-")
        work = Path(temp.name)
    elif args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    answer_max = parse_tokens(args.answer_max_budget)
    llm: Any = None
    llm_server: Any = None
    llm_model: str | None = None
    if args.answer:
        from app.llm import LLMClient
        from core.settings import load_settings

        llm_settings = load_settings()
        url = llm_settings.llm.url
        if not url:
            from serving import llamacpp

            llm_server = llamacpp.start(llm_settings.cpu_server)
            url = llm_server.url
        llm = LLMClient([url], llm_settings.llm.api_key, llm_settings.llm.model)
        llm_model = llm.model_info().id
        log(f"answers from {llm_model} at {url}")

    started = time.perf_counter()
    from ingest.pipeline import ingest
    from ingest.store import open_store
    from ingest.tokenizer import load_tokenizer
    from retrieval.service import RetrieveOptions, Retriever

    base_cfg = bench_settings(work, "niah")
    counter = load_tokenizer(base_cfg.tokenizer.path)
    log("loading the embedder ...")
    # The question is embedded once (memo) so cell latencies measure search + neighbours +
    # packing; the query embedding is timed on its own (it is the CPU-bound part, and on a
    # shared 2-core machine torch's threads make it jumpy).
    embedder = CachingEmbedder(base_cfg, cache_dir=work / "embeddings", memo_queries=True)
    embed_times: list[float] = []
    load_before = os.getloadavg()
    base = base_slices(essays, counter, args.slice_tokens)
    base_counts = counter.count_many(base)
    log(f"base haystack: {len(base)} slices, {sum(base_counts):,} tokens "
        f"({len(list(essays.glob('*.txt')))} essays)")

    cells: list[dict[str, Any]] = []
    per_size: list[dict[str, Any]] = []
    for size in sizes:
        label = short_tokens(size)
        slices = haystack(base, base_counts, counter, size)
        counts = counter.count_many(slices)
        folder = work / f"haystack-{label}"
        names = [folder / f"h{i:05d}.txt" for i in range(len(slices))]
        for path, text in zip(names, slices, strict=True):
            write_if_changed(path, text)
        for extra in set(folder.glob("*.txt")) - set(names):
            extra.unlink()
        settings = bench_settings(work, f"niah-{label}")
        search_mode = args.search_mode or settings.retrieval.search_mode
        store = open_store(settings)
        retriever = Retriever(settings, store, embedder, counter)
        size_info: dict[str, Any] = {"size": size, "label": label, "files": len(slices),
                                     "tokens": sum(counts), "ingests": []}
        try:
            # The clean haystack first (a no-op on a rerun beyond undoing the last needle).
            t0 = time.perf_counter()
            e0 = embedder.embedded
            report = ingest(settings, [folder], prune=True, store=store, embedder=embedder,
                            progress=Reporter(f"haystack {label}"))
            size_info["ingest_s"] = round(time.perf_counter() - t0, 2)
            size_info["chunks"] = sum(r.chunks for r in report.results
                                      if r.status in ("new", "updated", "unchanged"))
            size_info["model_embedded"] = embedder.embedded - e0
            log(f"haystack {label}: {len(slices)} files, {sum(counts):,} tokens, "
                f"{size_info['chunks']:,} chunks; ingest {size_info['ingest_s']:.1f}s "
                f"({report.count('new')} new, {report.count('updated')} updated, "
                f"{report.count('unchanged')} unchanged; {size_info['model_embedded']} chunks "
                "through the model)")
            embedder.save()
            for depth in depths:
                index, pos, actual = needle_position(slices, counts, counter, depth)
                original = slices[index]
                write_if_changed(names[index], original[:pos] + needle + original[pos:])
                t0 = time.perf_counter()
                report = ingest(settings, [folder], prune=True, store=store, embedder=embedder)
                ingest_s = time.perf_counter() - t0
                size_info["ingests"].append({"depth": depth, "seconds": round(ingest_s, 2),
                                             "updated": report.count("updated")})
                for _ in range(args.repeat):
                    t1 = time.perf_counter()
                    embedder.inner.embed_query(question)
                    embed_times.append(time.perf_counter() - t1)
                ranks = needle_ranks(retriever, store, question, sentence,
                                     limit=min(2000, max(100, size_info["chunks"] + 10)))
                for budget in budgets:
                    options = RetrieveOptions(budget_tokens=budget, search_mode=search_mode,
                                              context_mode=args.context_mode)
                    times = []
                    for _ in range(args.repeat):
                        t1 = time.perf_counter()
                        result = retriever.retrieve(question, options)
                        times.append(time.perf_counter() - t1)
                    d = result.to_dict(with_context=True)
                    ok = sentence in d["context"]
                    cell = {
                        "size": size, "size_label": label, "depth": depth,
                        "actual_depth": round(actual, 2), "budget": budget, "ok": ok,
                        "mode": d["mode"], "latency_ms": round(median_ms(times), 2),
                        "latencies_ms": [round(t * 1000, 2) for t in times],
                        "available": d["budget"]["available"], "used_tokens": d["used_tokens"],
                        "candidates": d["candidates"], "passages": len(d["passages"]),
                        "left_out": {r: sum(1 for x in d["left_out"] if x["reason"] == r)
                                     for r in ("budget", "duplicate")},
                        "needle_file": names[index].name, "needle_ranks": ranks,
                    }
                    if d["mode"] == "retrieve":
                        cell["needle_candidate_rank"] = needle_ranks(
                            retriever, store, question, sentence, d["candidates"],
                            (search_mode,))[search_mode]
                    if not ok:
                        cell["why"] = explain_miss(result, cell.get("needle_candidate_rank", {}),
                                                   ranks, search_mode)
                    if llm is not None and budget <= answer_max:
                        cell["answer"], cell["answer_ok"] = ask(llm, d["context"], question)
                    cells.append(cell)
                    log(f"  {label:>5} depth {depth:>5.1f}% budget {short_tokens(budget):>5}: "
                        f"{'ok' if ok else 'MISS'} ({d['mode']}, {cell['latency_ms']:.0f} ms, "
                        f"{d['candidates']} candidates, {d['used_tokens']:,} tokens"
                        f"{', ' + cell['why'] if not ok else ''})")
                write_if_changed(names[index], original)
            embedder.save()
        finally:
            store.close()
        per_size.append(size_info)

    wall = time.perf_counter() - started
    loads = {"before": [round(x, 2) for x in load_before],
             "after": [round(x, 2) for x in os.getloadavg()]}
    if llm is not None:
        llm.close()
    if llm_server is not None:
        llm_server.stop()
    print_grid(cells, sizes, depths, budgets, search_mode, args, per_size, wall, base_cfg)
    print(f"query embedding (MiniLM, CPU): median {median_ms(embed_times):.1f} ms, p95 "
          f"{p95_ms(embed_times):.1f} ms over {len(embed_times)}; load average 1 min before/after: "
          f"{loads['before'][0]} / {loads['after'][0]} on {os.cpu_count()} CPUs")
    path = write_results(args.out, {
        "benchmark": "niah", "question": question, "needle": sentence,
        "search_mode": search_mode, "context_mode": args.context_mode,
        "slice_tokens": args.slice_tokens, "repeat": args.repeat,
        "settings": {"chunking": base_cfg.chunking.model_dump(),
                     "retrieval": base_cfg.retrieval.model_dump(),
                     "embedding": base_cfg.embedding.model_dump()},
        "sizes": per_size, "cells": cells, "wall_s": round(wall, 1),
        "passed": sum(c["ok"] for c in cells), "total": len(cells),
        "query_embed_ms": {"median": round(median_ms(embed_times), 2),
                           "p95": round(p95_ms(embed_times), 2), "n": len(embed_times)},
        "load_average": loads,
        "answer_check": answer_summary(cells) if llm_model else "not run (--answer)",
        "answer_model": llm_model,
        "environment": environment(), "argv": sys.argv[1:],
    })
    print(f"\nresults: {path}")
    if temp is not None:
        temp.cleanup()


def ask(llm: Any, context: str, question: str) -> tuple[str, bool]:
    """The LLM's answer from the packed context, as the app prompts it."""
    from retrieval.prompt import build_messages

    text, _ = llm.chat(build_messages(context, question), max_tokens=64, temperature=0.0)
    return text.strip(), "dolores park" in text.lower()


def answer_summary(cells: list[dict[str, Any]]) -> str:
    asked = [c for c in cells if "answer_ok" in c]
    if not asked:
        return "no cell within --answer-max-budget"
    named = sum(c["answer_ok"] for c in asked)
    packed = [c for c in asked if c["ok"]]
    return (f"{named}/{len(asked)} answers name Dolores Park ({sum(c['answer_ok'] for c in packed)}"
            f"/{len(packed)} where the needle was packed; budgets <= the answer limit only)")


def print_grid(cells: list[dict[str, Any]], sizes: list[int], depths: list[float],
               budgets: list[int], search_mode: str, args: argparse.Namespace,
               per_size: list[dict[str, Any]], wall: float, settings: Any) -> None:
    by = {(c["size"], c["depth"], c["budget"]): c for c in cells}
    headers = ["haystack", "depth", *[f"budget {short_tokens(b)}" for b in budgets],
               "needle rank h/d/k"]
    rows = []
    for size in sizes:
        for depth in depths:
            row: list[Any] = [short_tokens(size), f"{depth:g}%"]
            ranks = None
            for budget in budgets:
                c = by.get((size, depth, budget))
                if c is None:
                    row.append("-")
                    continue
                mark = ("ok*" if c["mode"] == "full" else "ok") if c["ok"] else "MISS"
                row.append(f"{mark} {c['latency_ms']:.0f}ms")
                ranks = c["needle_ranks"]
            row.append("/".join(str(ranks[m]["rank"] or "-") for m in ("hybrid", "dense", "keyword"))
                       if ranks else "-")
            rows.append(row)
    print(f"\nNeedle in a haystack: {search_mode} search, context_mode={args.context_mode}, "
          f"{args.slice_tokens}-token haystack files; chunks {settings.chunking.size}/"
          f"{settings.chunking.overlap} tokens, neighbours {settings.retrieval.neighbours}, "
          f"rrf_k {settings.retrieval.rrf_k}")
    print("cell: ok = needle sentence inside the packed context, ok* = ok with whole documents "
          "(auto: the haystack fits the budget), MISS = not inside; ms = median retrieve() "
          f"latency of {args.repeat}: search + neighbours + packing, query embedded beforehand")
    print("needle rank: rank of the chunk holding the needle in hybrid/dense/keyword search "
          "(1 = first)")
    print(table(headers, rows, right=[False, True, *[True] * len(budgets), True]))
    passed = sum(c["ok"] for c in cells)
    print(f"\n{passed}/{len(cells)} cells passed")
    lat = [["budget", "available", "p50 ms", "max ms", "cells"]]
    for budget in budgets:
        cs = [c for c in cells if c["budget"] == budget and c["mode"] == "retrieve"]
        if cs:
            ms = [c["latency_ms"] for c in cs]
            lat.append([short_tokens(budget), f"{cs[0]['available']:,}",
                        f"{statistics.median(ms):.1f}", f"{max(ms):.1f}", str(len(cs))])
    if len(lat) > 1:
        print("\nlatency of the cells that searched (whole-document cells excluded):")
        print(table(lat[0], lat[1:]))
    misses = [c for c in cells if not c["ok"]]
    for c in misses:
        print(f"MISS {c['size_label']} depth {c['depth']:g}% budget {short_tokens(c['budget'])}: "
              f"{c['why']}")
    print("\nhaystacks: " + "; ".join(
        f"{s['label']} = {s['files']} files, {s['tokens']:,} tokens, {s.get('chunks', 0):,} chunks, "
        f"first ingest {s.get('ingest_s', 0):.1f}s, per-depth re-ingest median "
        f"{statistics.median([i['seconds'] for i in s['ingests']]) if s['ingests'] else 0:.1f}s"
        for s in per_size))
    print("budget = requested tokens; the packer fills min(budget, window) - answer reserve - "
          "prompt tokens ('available' above)")
    print("answer check (does the answer name Dolores Park?): "
          + (answer_summary(cells) if any("answer_ok" in c for c in cells) else
             "not run (--answer)"))
    print(f"wall time: {wall:.1f}s")


if __name__ == "__main__":
    main()
