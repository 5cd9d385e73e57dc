"""`rag eval` on public data: its recall-vs-budget table per layout, its run time, and its
agreement with bench/niah.py and bench/squad_recall.py on the same stores.

NIAH: bench/niah.py runs first (a subprocess; one haystack of --niah-size tokens, --depths,
--budgets, context_mode auto as the product runs) and leaves its haystack collection clean in
--work; then `rag eval` (app.evaluation, no LLM) runs there with --probes needle probes at the
same depths. Agreement: eval's needle recall against niah.py's per budget.

SQuAD: bench/squad_recall.py runs first (a subprocess, --squad-sample questions, hybrid search)
and leaves its collection of 2,067 paragraphs in --work; then `rag eval` runs there twice: with
its own passage probes (masked sentences), and measuring the benchmark's own questions (probe
evidence = the shortest gold answer string) through eval's measurement code. Agreement: that
second recall against squad_recall.py's recall@budget (they must agree within 0.02).

    .venv/bin/python bench/eval.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    CachingEmbedder,
    bench_settings,
    environment,
    log,
    parse_tokens,
    short_tokens,
    table,
    write_results,
)

HERE = Path(__file__).resolve().parent
AGREE = 0.02


def run_script(script: str, args: list[str]) -> float:
    """Runs a sibling benchmark; its wall time."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script), *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def evaluate(settings: Any, embedder: Any, **options: Any) -> Any:
    """`rag eval` (no LLM) on the settings' collection: the run and its wall time."""
    from app.evaluation import EvalOptions, Evaluation, without_model
    from ingest.store import open_store

    store = open_store(settings)
    try:
        t0 = time.perf_counter()
        run = Evaluation(settings, store, embedder, without_model(settings)).run(
            EvalOptions(llm_questions=False, **options))
        return run, time.perf_counter() - t0
    finally:
        store.close()


def measure_questions(settings: Any, embedder: Any, questions: list[dict[str, Any]],
                      budgets: tuple[int, ...]) -> dict[int, float]:
    """The benchmark's own questions measured by eval's code: recall per budget."""
    from app.evaluation import EvalOptions, Evaluation, without_model
    from app.evaluation.probes import Probe
    from app.evaluation.runs import summarize
    from core.choices import Layout, SearchMode
    from ingest.store import open_store
    from retrieval.service import Retriever

    probes = [Probe("passage", q["question"], min(q["answers"], key=len), q["answers"][0],
                    str(q["file"]), 0.0, "squad") for q in questions]
    served = without_model(settings)
    store = open_store(settings)
    try:
        evaluation = Evaluation(settings, store, embedder, served)
        retriever = Retriever(settings, store, embedder, served.counter)
        options = EvalOptions(budgets=budgets, layouts=(Layout.DOCUMENT,))
        measured = evaluation.measure(retriever, probes, 0, options, (SearchMode.HYBRID,))
    finally:
        store.close()
    return {c["budget"]: c["recall"] for c in summarize(measured, probes)}


def niah_part(args: argparse.Namespace, work: Path, budgets: tuple[int, ...]) -> dict[str, Any]:
    size = parse_tokens(args.niah_size)
    depths = ",".join(str(round(100 * i / (args.probes - 1))) for i in range(args.probes))
    out = work / "niah.json"
    wall = run_script("niah.py", ["--data", str(args.data / "niah"), "--sizes", args.niah_size,
                                  "--depths", depths, "--budgets", ",".join(map(str, budgets)),
                                  "--repeat", "1", "--work", str(work / "niah"),
                                  "--out", str(out)])
    cells = json.loads(out.read_text())["cells"]
    niah = {b: sum(c["ok"] for c in cells if c["budget"] == b)
            / max(1, sum(1 for c in cells if c["budget"] == b)) for b in budgets}
    settings = bench_settings(work / "niah", f"niah-{short_tokens(size)}")
    embedder = CachingEmbedder(settings, cache_dir=work / "niah" / "embeddings")
    from core.choices import Layout

    run, seconds = evaluate(settings, embedder, probes=args.probes, kinds=("needle",),
                            budgets=budgets, layouts=tuple(Layout), seed=args.seed)
    embedder.save()
    return {"bench_s": round(wall, 1), "eval_s": round(seconds, 1), "cells": run.cells,
            "bench_recall": niah, "haystack_tokens": run.corpus["tokens"],
            "eval_recall": {c["budget"]: c["recall"] for c in run.cells
                            if c["layout"] == "document"}}


def squad_part(args: argparse.Namespace, work: Path, budgets: tuple[int, ...]) -> dict[str, Any]:
    out = work / "squad.json"
    wall = run_script("squad_recall.py", [
        "--data", str(args.data / "squad"), "--sample", str(args.squad_sample),
        "--seed", str(args.seed), "--modes", "hybrid", "--budgets",
        ",".join(map(str, budgets)), "--work", str(work / "squad"), "--out", str(out)])
    result = json.loads(out.read_text())
    bench = {int(b): v for b, v in result["results"]["hybrid"]["recall_at_budget"].items()}
    sys.path.insert(0, str(HERE))
    from squad_recall import load_squad, paragraph_files

    _, questions = paragraph_files(load_squad(args.data / "squad"), work / "squad" / "paragraphs")
    rng = random.Random(args.seed)
    sample = rng.sample(questions, args.squad_sample)  # squad_recall.py's sample
    settings = bench_settings(work / "squad", "squad")
    embedder = CachingEmbedder(settings, cache_dir=work / "squad" / "embeddings")
    t0 = time.perf_counter()
    same = measure_questions(settings, embedder, sample, budgets)
    same_s = time.perf_counter() - t0
    from core.choices import Layout

    run, seconds = evaluate(settings, embedder, probes=args.probes, kinds=("passage",),
                            budgets=budgets, layouts=tuple(Layout), seed=args.seed)
    embedder.save()
    return {"bench_s": round(wall, 1), "eval_s": round(seconds, 1),
            "same_questions_s": round(same_s, 1), "cells": run.cells, "bench_recall": bench,
            "eval_same_questions": same,
            "eval_recall": {c["budget"]: c["recall"] for c in run.cells
                            if c["layout"] == "document"}}


def print_part(name: str, part: dict[str, Any], budgets: tuple[int, ...],
               agree_key: str) -> list[str]:
    layouts = sorted({c["layout"] for c in part["cells"]})
    by = {(c["budget"], c["layout"]): c for c in part["cells"]}
    rows = [[layout, *[f"{by[(b, layout)]['recall']:.2f}" for b in budgets]] for layout in layouts]
    print(f"\n{name}: rag eval recall by budget, its own probes (eval {part['eval_s']:.1f}s, "
          f"benchmark {part['bench_s']:.1f}s)")
    print(table(["layout", *[short_tokens(b) for b in budgets]], rows))
    failures = []
    agree_rows = []
    for b in budgets:
        mine, theirs = part[agree_key][b], part["bench_recall"][b]
        ok = abs(mine - theirs) <= AGREE
        failures += [] if ok else [f"{name} {short_tokens(b)}"]
        agree_rows.append([short_tokens(b), f"{mine:.3f}", f"{theirs:.3f}",
                           f"{mine - theirs:+.3f}", "yes" if ok else "NO"])
    what = ("the benchmark's questions measured by rag eval" if agree_key == "eval_same_questions"
            else "rag eval's needles")
    print(f"agreement ({what} vs the benchmark's recall, within {AGREE}):")
    print(table(["budget", "rag eval", "benchmark", "diff", "agree"], agree_rows))
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="../shared/data")
    ap.add_argument("--budgets", default="4k,8k,16k", help="budgets (default: %(default)s)")
    ap.add_argument("--probes", type=int, default=11,
                    help="probes of each kind; NIAH depths are spread the same way")
    ap.add_argument("--niah-size", default="64k", help="haystack tokens (default: %(default)s)")
    ap.add_argument("--squad-sample", type=int, default=300, help="SQuAD questions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="niah,squad")
    ap.add_argument("--work", type=Path, default=RESULTS / "cache" / "eval")
    ap.add_argument("--out", type=Path, default=RESULTS / "eval.json")
    args = ap.parse_args()
    if args.probes < 2:
        ap.error("--probes must be at least 2")
    budgets = tuple(sorted({parse_tokens(b) for b in args.budgets.split(",") if b.strip()}))
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    failures: list[str] = []
    parts = [p.strip() for p in args.parts.split(",")]
    if "niah" in parts:
        log("NIAH: bench/niah.py, then rag eval on its haystack ...")
        results["niah"] = niah_part(args, args.work, budgets)
        failures += print_part("NIAH", results["niah"], budgets, "eval_recall")
    if "squad" in parts:
        log("SQuAD: bench/squad_recall.py, then rag eval on its paragraphs ...")
        results["squad"] = squad_part(args, args.work, budgets)
        failures += print_part("SQuAD", results["squad"], budgets, "eval_same_questions")
        own = results["squad"]["eval_recall"]
        print("SQuAD, rag eval's own passage probes (masked sentences), document layout: "
              + ", ".join(f"{short_tokens(b)} {own[b]:.2f}" for b in budgets))
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f}s; " + ("all agree" if not failures
                                         else "disagree: " + ", ".join(failures)))
    path = write_results(args.out, {"benchmark": "eval", "budgets": budgets,
                                    "probes": args.probes, "results": results,
                                    "wall_s": round(wall, 1), "disagree": failures,
                                    "environment": environment(), "argv": sys.argv[1:]})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
