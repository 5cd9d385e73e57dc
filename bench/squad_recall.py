"""Open-domain SQuAD retrieval: recall@k and recall@budget over every SQuAD v1.1 dev paragraph.

Every dev paragraph (2,067) is written as one text file (<article#>_<title>_<paragraph#>.txt)
and ingested through the real pipeline into one collection, kept in --work so reruns skip
ingestion. For a fixed-seed sample of questions (--sample, --seed), and each search mode:

  recall@k       the first k search results (chunks, store query with limit = max k; for
                 hybrid that is RRF over a dense and a keyword prefetch of max k each) include
                 a chunk whose document, a paragraph, contains one of the question's gold
                 answer strings (exact, case-sensitive substring of the paragraph text).
  recall@budget  Retriever.retrieve(question, RetrieveOptions(search_mode=mode,
                 budget_tokens=budget, context_mode="retrieve")): one of the gold answer
                 strings is a substring of the packed context.

"answer" recall counts any paragraph holding an answer string (the usual open-domain
definition; short answers such as years also occur in other paragraphs); "gold" recall
counts only the question's own paragraph (a hit / a passage from that document).

The budget is the requested one; the packer fills min(budget, window) - answer reserve -
prompt tokens (the 'available' column; the settings' answer reserve, 1,024, unless
--answer-reserve says otherwise).

    .venv/bin/python bench/squad_recall.py --data ../shared/data/squad
    .venv/bin/python bench/squad_recall.py --data ../shared/data/squad --sample 2000 --modes hybrid
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    int_list,
    log,
    median_ms,
    p95_ms,
    parse_tokens,
    short_tokens,
    table,
    write_if_changed,
    write_results,
)

MODES = ("hybrid", "dense", "keyword")


def load_squad(data: Path) -> dict[str, Any]:
    path = data
    if data.is_dir():
        found = sorted(data.glob("dev-v1.1*.json")) or sorted(data.glob("*.json"))
        if not found:
            raise SystemExit(f"no SQuAD json in {data}")
        path = found[0]
    return json.loads(path.read_text())


def paragraph_files(squad: dict[str, Any], folder: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """Writes one file per paragraph; returns the files and every question with its
    paragraph's file and gold answer strings."""
    files: list[Path] = []
    questions: list[dict[str, Any]] = []
    for a, article in enumerate(squad["data"]):
        title = re.sub(r"[^A-Za-z0-9_-]+", "_", article["title"])[:60]
        for p, para in enumerate(article["paragraphs"]):
            path = folder / f"{a:02d}_{title}_{p:03d}.txt"
            write_if_changed(path, para["context"])
            files.append(path)
            for qa in para["qas"]:
                answers = sorted({x["text"].strip() for x in qa["answers"] if x["text"].strip()})
                if answers:
                    questions.append({"id": qa["id"], "question": qa["question"],
                                      "answers": answers, "file": path})
    for extra in set(folder.glob("*.txt")) - set(files):
        extra.unlink()
    return files, questions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="the squad folder (or its dev-v1.1 json), e.g. ../shared/data/squad")
    ap.add_argument("--sample", type=int, default=1000,
                    help="questions sampled (0 = all 10,570; default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    ap.add_argument("--ks", default="1,5,10,20", help="k of recall@k (default: %(default)s)")
    ap.add_argument("--budgets", default="2k,4k,8k",
                    help="requested context budgets, k = 1,024 (default: %(default)s)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="search modes (default: %(default)s)")
    ap.add_argument("--answer-reserve", type=int, default=None,
                    help="override retrieval.answer_reserve (default: the settings', 1,024)")
    ap.add_argument("--work", type=Path, default=RESULTS / "cache" / "squad",
                    help="scratch folder for paragraph files, the store and the embedding cache; "
                         "kept between runs so reruns skip ingestion (default: %(default)s); "
                         "'temp' for a temporary folder")
    ap.add_argument("--fresh", action="store_true", help="empty --work first")
    ap.add_argument("--out", type=Path, default=RESULTS / "squad_recall.json",
                    help="results JSON (default: %(default)s)")
    args = ap.parse_args()

    ks = sorted(set(int_list(args.ks)))
    budgets = [parse_tokens(b) for b in args.budgets.split(",") if b.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not ks or min(ks) < 1 or not budgets or any(m not in MODES for m in modes):
        ap.error("--ks needs positive integers, --budgets at least one budget, --modes of "
                 + ", ".join(MODES))
    if not args.data.exists():
        ap.error(f"--data {args.data}: no such file or folder")

    temp = None
    work: Path = args.work
    if str(work) == "temp":
        temp = tempfile.TemporaryDirectory(prefix="squad-")
        work = Path(temp.name)
    elif args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from ingest.pipeline import document_id_for, ingest
    from ingest.store import LIVE, Where, open_store
    from ingest.tokenizer import load_tokenizer
    from retrieval.service import RetrieveOptions, Retriever

    squad = load_squad(args.data)
    folder = work / "paragraphs"
    files, questions = paragraph_files(squad, folder)
    text_by_doc = {document_id_for(f): f.read_text() for f in files}
    doc_of_file = {f: document_id_for(f) for f in files}
    rng = random.Random(args.seed)
    sample = questions if args.sample <= 0 or args.sample >= len(questions) else \
        rng.sample(questions, args.sample)
    log(f"SQuAD: {len(files):,} paragraphs, {len(questions):,} questions, {len(sample):,} sampled")

    overrides: dict[str, Any] = {}
    if args.answer_reserve is not None:
        overrides["answer_reserve"] = args.answer_reserve
    settings = bench_settings(work, "squad", **overrides)
    counter = load_tokenizer(settings.tokenizer.path)
    log("loading the embedder ...")
    embedder = CachingEmbedder(settings, cache_dir=work / "embeddings", memo_queries=True)
    store = open_store(settings)
    try:
        t0 = time.perf_counter()
        report = ingest(settings, [folder], prune=True, store=store, embedder=embedder,
                        progress=Reporter("paragraphs"))
        ingest_s = time.perf_counter() - t0
        embedder.save()
        failed = report.failed
        chunks = sum(r.chunks for r in report.results if r.status in ("new", "updated", "unchanged"))
        log(f"ingest: {ingest_s:.1f}s, {report.count('new')} new, {report.count('updated')} updated, "
            f"{report.count('unchanged')} unchanged, {len(failed)} failed; {chunks:,} chunks, "
            f"{embedder.embedded:,} through the model")
        if failed:
            log("failed: " + "; ".join(f"{r.path}: {r.reason}" for r in failed[:5]))

        t0 = time.perf_counter()
        embedder.remember_queries([q["question"] for q in sample])
        query_embed_s = time.perf_counter() - t0
        retriever = Retriever(settings, store, embedder, counter)
        rrf_k = settings.retrieval.rrf_k
        live = Where(equals={"state": LIVE})
        results: dict[str, Any] = {}
        per_question: list[dict[str, Any]] = []
        for mode in modes:
            t_mode = time.perf_counter()
            at_k = {k: [0, 0] for k in ks}  # k -> [answer hits, gold hits]
            at_b = {b: [0, 0] for b in budgets}
            stats: dict[int, dict[str, list[float]]] = {
                b: {"available": [], "used": [], "passages": [], "candidates": [], "seconds": [],
                    "documents": []} for b in budgets}
            for n, q in enumerate(sample, start=1):
                text = q["question"]
                gold = doc_of_file[q["file"]]
                answers = q["answers"]
                points = store.query(
                    dense=embedder.embed_query(text) if mode != "keyword" else None,
                    sparse=retriever.sparse.query(text) if mode != "dense" else None,
                    mode=mode, where=live, limit=max(ks), rrf_k=rrf_k)
                docs = [p.payload["document_id"] for p in points]
                has = [any(a in text_by_doc.get(d, "") for a in answers) for d in docs]
                row: dict[str, Any] = {"id": q["id"], "mode": mode}
                first_answer = next((i + 1 for i, h in enumerate(has) if h), None)
                first_gold = next((i + 1 for i, d in enumerate(docs) if d == gold), None)
                row["answer_rank"], row["gold_rank"] = first_answer, first_gold
                for k in ks:
                    at_k[k][0] += first_answer is not None and first_answer <= k
                    at_k[k][1] += first_gold is not None and first_gold <= k
                for b in budgets:
                    r = retriever.retrieve(text, RetrieveOptions(
                        search_mode=mode, budget_tokens=b, context_mode="retrieve"))
                    context = r.packing.context
                    in_ctx = any(a in context for a in answers)
                    gold_in = any(p.document_id == gold for p in r.packing.passages)
                    at_b[b][0] += in_ctx
                    at_b[b][1] += gold_in
                    s = stats[b]
                    s["available"].append(r.budget.available)
                    s["used"].append(r.packing.used_tokens)
                    s["passages"].append(len(r.packing.passages))
                    s["documents"].append(len({p.document_id for p in r.packing.passages}))
                    s["candidates"].append(r.candidates)
                    s["seconds"].append(r.seconds)
                    row[f"context@{b}"] = in_ctx
                    row[f"gold@{b}"] = gold_in
                per_question.append(row)
                if n % 250 == 0:
                    log(f"  {mode}: {n}/{len(sample)} questions")
            total = len(sample)
            results[mode] = {
                "recall_at_k": {str(k): round(v[0] / total, 4) for k, v in at_k.items()},
                "gold_recall_at_k": {str(k): round(v[1] / total, 4) for k, v in at_k.items()},
                "recall_at_budget": {str(b): round(v[0] / total, 4) for b, v in at_b.items()},
                "gold_recall_at_budget": {str(b): round(v[1] / total, 4) for b, v in at_b.items()},
                "budgets": {str(b): {
                    "available": round(statistics.mean(s["available"])),
                    "used_tokens_mean": round(statistics.mean(s["used"])),
                    "passages_mean": round(statistics.mean(s["passages"]), 1),
                    "documents_mean": round(statistics.mean(s["documents"]), 1),
                    "candidates": round(statistics.mean(s["candidates"]), 1),
                    "retrieve_ms_p50": round(median_ms(s["seconds"]), 2),
                    "retrieve_ms_p95": round(p95_ms(s["seconds"]), 2),
                } for b, s in stats.items()},
                "seconds": round(time.perf_counter() - t_mode, 1),
            }
            log(f"{mode}: done in {results[mode]['seconds']:.0f}s")
    finally:
        store.close()

    wall = time.perf_counter() - started
    info = {"paragraphs": len(files), "questions": len(questions), "sample": len(sample),
            "seed": args.seed, "chunks": chunks, "ingest_s": round(ingest_s, 1),
            "ingest_embedded": embedder.embedded, "query_embed_s": round(query_embed_s, 1),
            "answer_reserve": settings.retrieval.answer_reserve,
            "chunking": settings.chunking.model_dump(), "rrf_k": rrf_k}
    print_tables(results, ks, budgets, modes, info, wall)
    path = write_results(args.out, {
        "benchmark": "squad_recall", **info, "ks": ks, "budgets": budgets, "modes": modes,
        "results": results, "wall_s": round(wall, 1), "environment": environment(),
        "load_average": [round(x, 2) for x in os.getloadavg()], "argv": sys.argv[1:],
        "questions_detail": per_question,
    })
    print(f"\nresults: {path}")
    if temp is not None:
        temp.cleanup()


def print_tables(results: dict[str, Any], ks: list[int], budgets: list[int], modes: list[str],
                 info: dict[str, Any], wall: float) -> None:
    print(f"\nSQuAD v1.1 dev open-domain retrieval: {info['paragraphs']:,} paragraphs as documents "
          f"({info['chunks']:,} chunks), {info['sample']:,} of {info['questions']:,} questions "
          f"(seed {info['seed']})")
    bl = [f"R@{short_tokens(b)}" for b in budgets]
    headers = ["mode", *[f"R@{k}" for k in ks], *bl]
    for key_k, key_b, title in (
            ("recall_at_k", "recall_at_budget",
             "answer recall: a hit's paragraph / the packed context contains a gold answer string"),
            ("gold_recall_at_k", "gold_recall_at_budget",
             "gold recall: the question's own paragraph is a hit / a packed passage")):
        rows = [[m, *[f"{results[m][key_k][str(k)]:.3f}" for k in ks],
                 *[f"{results[m][key_b][str(b)]:.3f}" for b in budgets]] for m in modes]
        print(f"\n{title}")
        print(table(headers, rows))
    rows = []
    for m in modes:
        for b in budgets:
            s = results[m]["budgets"][str(b)]
            rows.append([m, short_tokens(b), f"{s['available']:,}", f"{s['used_tokens_mean']:,}",
                         f"{s['passages_mean']:.1f}", f"{s['candidates']:.0f}",
                         f"{s['retrieve_ms_p50']:.1f}", f"{s['retrieve_ms_p95']:.1f}"])
    print("\npacking per budget (means over the sample; ms = retrieve() with the question "
          "embedded beforehand)")
    print(table(["mode", "budget", "available", "used", "passages", "candidates", "p50 ms",
                 "p95 ms"], rows))
    print(f"\nbudget = requested tokens; available = min(budget, window) - answer reserve "
          f"({info['answer_reserve']:,}) - prompt tokens")
    if "hybrid" in results:
        b8 = next((b for b in budgets if b == 8192), None)
        if b8 is not None:
            v = results["hybrid"]["recall_at_budget"][str(b8)]
            print(f"target: hybrid answer recall@8k >= 0.95: {v:.3f} "
                  f"({'met' if v >= 0.95 else 'NOT met'})")
    print(f"ingest {info['ingest_s']:.1f}s ({info['ingest_embedded']:,} chunks through the model); "
          f"{info['sample']:,} questions embedded in {info['query_embed_s']:.1f}s; wall time {wall:.1f}s")


if __name__ == "__main__":
    main()
