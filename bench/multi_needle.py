"""Questions whose evidence is spread out: RULER-style multi-needle probes (arXiv 2404.06654)
through the real pipeline. Is every needle a question needs inside the packed context?

Each trial is one haystack (the Paul Graham essays cut into --slice-tokens files, as in
niah.py, repeated to --sizes tokens) holding the needles of every task at seeded random
depths, each at a sentence boundary:

  mv4 / mv8  multi-value: one key with 4 (8) values, "One of the special magic numbers for
             KEY is: 1234567."; the question asks for all of them
  mk         multi-key: four keys with one value each; the question asks for one, the
             other three are distractors
  mq         multi-query: the question asks for all four keys of mk at once
  vt         variable tracking: a chain "VAR ABCDE = 1234567." "VAR FGHIJ = VAR ABCDE." ...
             of --hops assignments; the question asks which variables hold the value

The tasks' needles are distractors for one another (similar sentences, other keys). A
trial's store is built once (fresh collection, files never changed afterwards) and every row
reads it: the same question gets the same candidates in every row and on every rerun, so the
rows differ only by the retrieval settings (approximate search on a re-ingested store is not
reproducible; these stores stay below Qdrant's full-scan threshold, so search is exact).

Per task x haystack size x budget x layout x variant: the share of trials with every needle
packed ("all") and the mean share of needles packed. Variants are retrieval settings
(--variant NAME:field=value,...); "today" turns off what issue 15 added, "default" is the
settings as shipped, so the table compares them in the same run.

With --squad DIR and --niah DIR the single-fact benches run too (squad_recall.py at 8k, hybrid;
niah.py with its defaults) and their headline figures are printed under the table.

    .venv/bin/python bench/multi_needle.py --data ../shared/data/niah/essays
    .venv/bin/python bench/multi_needle.py --data ../shared/data/niah/essays --sizes 32k,64k,128k \
        --trials 20 --layouts document,relevance,edges --squad ../shared/data/squad \
        --niah ../shared/data/niah
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    CachingEmbedder,
    Reporter,
    bench_settings,
    environment,
    log,
    parse_tokens,
    short_tokens,
    table,
    write_if_changed,
    write_results,
)
from niah import base_slices, haystack, needle_position

WORDS_A = ["amber", "brisk", "cobalt", "dusky", "ember", "fallow", "gilded", "hazel", "ivory",
           "jaunty", "kindly", "lucid", "mellow", "nimble", "opal", "placid", "quaint", "russet",
           "sable", "tawny", "umber", "vivid", "wistful", "zesty"]
WORDS_B = ["falcon", "harbor", "meadow", "lantern", "orchid", "glacier", "thistle", "canyon",
           "sparrow", "willow", "compass", "quarry", "beacon", "marble", "saddle", "tundra",
           "juniper", "pebble", "walrus", "cinder", "heron", "violet", "badger", "lagoon"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# What issue 15 added, turned off: today's packing.
TODAY = {"coverage": 0.0, "leaders": 3, "query_variants": False, "follow_hops": 0}


@dataclass
class Task:
    name: str
    question: str
    needles: list[str]


def _key(rng: random.Random, used: set[str]) -> str:
    while True:
        key = f"{rng.choice(WORDS_A)}-{rng.choice(WORDS_B)}"
        if key not in used:
            used.add(key)
            return key


def _value(rng: random.Random) -> str:
    return str(rng.randint(1_000_000, 9_999_999))


def _magic(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}."


def make_tasks(rng: random.Random, hops: int) -> list[Task]:
    """The tasks of one trial, their needles drawn from `rng`."""
    used: set[str] = set()
    tasks = []
    for n in (4, 8):
        key = _key(rng, used)
        tasks.append(Task(f"mv{n}", f"What are all the special magic numbers for {key} "
                                    "mentioned in the provided text?",
                          [_magic(key, _value(rng)) for _ in range(n)]))
    keys = [_key(rng, used) for _ in range(4)]
    magic = [_magic(k, _value(rng)) for k in keys]
    tasks.append(Task("mk", f"What is the special magic number for {keys[0]} mentioned in the "
                            "provided text?", magic[:1]))
    tasks.append(Task("mq", "What are all the special magic numbers for "
                            f"{', '.join(keys[:-1])} and {keys[-1]} mentioned in the provided "
                            "text?", magic))
    names: list[str] = []
    while len(names) < hops + 1:
        name = "".join(rng.choice(LETTERS) for _ in range(5))
        if name not in names:
            names.append(name)
    value = _value(rng)
    chain = [f"VAR {names[0]} = {value}."]
    chain += [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:], strict=False)]
    tasks.append(Task("vt", f"Find all variables (VAR) that are assigned the value {value}, "
                            "directly or through a chain of VAR assignments.", chain))
    return tasks


def plant(slices: list[str], counts: list[int], counter: Any, sentences: list[str],
          rng: random.Random) -> list[str]:
    """The slices with each sentence inserted at a random depth (a sentence boundary)."""
    inserts: dict[int, list[tuple[int, str]]] = {}
    for sentence in sentences:
        index, pos, _ = needle_position(slices, counts, counter, rng.uniform(0, 100))
        inserts.setdefault(index, []).append((pos, sentence))
    out = list(slices)
    for index, items in inserts.items():
        text = out[index]
        for pos, sentence in sorted(items, reverse=True):  # later positions first
            text = text[:pos] + " " + sentence + " " + text[pos:]
        out[index] = text
    return out


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """'name:field=value,field=value' → (name, retrieval overrides)."""
    name, _, rest = text.partition(":")
    fields: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        field, _, raw = item.partition("=")
        fields[field.strip()] = json.loads(raw) if raw.strip() not in ("", "true", "false") \
            else raw.strip() == "true"
    return name.strip(), fields


def score(context: str, needles: list[str]) -> int:
    return sum(n in context for n in needles)


def run_trial(args: argparse.Namespace, work: Path, label: str, trial: int, slices: list[str],
              counts: list[int], counter: Any, embedder: Any) -> tuple[Any, list[Task]]:
    """Writes and ingests one trial's haystack (once: kept in `work`); its tasks."""
    from ingest.pipeline import ingest
    from ingest.store import open_store

    rng = random.Random(f"{args.seed}-{label}-{trial}")
    tasks = make_tasks(rng, args.hops)
    planted = plant(slices, counts, counter, [s for t in tasks for s in t.needles], rng)
    folder = work / f"haystack-{label}-{trial:03d}"
    names = [folder / f"h{i:05d}.txt" for i in range(len(planted))]
    fresh = False
    for path, text in zip(names, planted, strict=True):
        fresh |= write_if_changed(path, text)
    collection = f"mn-{label}-{trial:03d}"
    settings = bench_settings(work, collection)
    if fresh and settings.store_path.exists():
        import shutil

        shutil.rmtree(settings.store_path)  # never re-ingest into a used store: rebuild
    store = open_store(settings)
    report = ingest(settings, [folder], prune=True, store=store, embedder=embedder,
                    progress=Reporter(f"{label} trial {trial}"))
    if report.failed:
        raise SystemExit(f"ingest failed: {report.failed}")
    embedder.save()
    return store, tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="the essays folder, e.g. ../shared/data/niah/essays")
    ap.add_argument("--sizes", default="32k,128k", help="haystack tokens (default: %(default)s)")
    ap.add_argument("--budgets", default="4k,8k,16k,32k",
                    help="requested budgets, k = 1,024 (default: %(default)s)")
    ap.add_argument("--layouts", default="document",
                    help="layouts, comma-separated (default: %(default)s)")
    ap.add_argument("--tasks", default="mv4,mv8,mk,mq,vt", help="(default: %(default)s)")
    ap.add_argument("--trials", type=int, default=10,
                    help="haystacks per size, each with its own needles (default: %(default)s)")
    ap.add_argument("--hops", type=int, default=4, help="variable tracking hops (default: 4)")
    ap.add_argument("--seed", type=int, default=15, help="(default: %(default)s)")
    ap.add_argument("--slice-tokens", type=int, default=2048,
                    help="tokens per haystack file (default: %(default)s)")
    ap.add_argument("--variant", action="append", default=None, metavar="NAME:FIELD=VALUE,...",
                    help="a row of retrieval settings to compare (repeatable; default: today "
                         f"= {TODAY} and default = the shipped settings)")
    ap.add_argument("--squad", type=Path, default=None,
                    help="also run squad_recall.py (hybrid, 8k) on this folder")
    ap.add_argument("--squad-sample", type=int, default=1000, help="(default: %(default)s)")
    ap.add_argument("--niah", type=Path, default=None,
                    help="also run niah.py (its default grid) on this folder")
    ap.add_argument("--work", type=Path, default=RESULTS / "cache" / "multi_needle",
                    help="haystack files, stores and the embedding cache, kept between runs "
                         "(default: %(default)s)")
    ap.add_argument("--out", type=Path, default=RESULTS / "multi_needle.json")
    args = ap.parse_args()

    if not args.data.is_dir() or not list(args.data.glob("*.txt")):
        ap.error(f"--data {args.data}: expected a folder of .txt essays")
    sizes = [parse_tokens(s) for s in args.sizes.split(",") if s.strip()]
    budgets = [parse_tokens(b) for b in args.budgets.split(",") if b.strip()]
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    wanted = [x.strip() for x in args.tasks.split(",") if x.strip()]
    variants = [parse_variant(v) for v in (args.variant or [
        "today:" + ",".join(f"{k}={json.dumps(v)}" for k, v in TODAY.items()), "default:"])]
    if args.trials < 1 or not sizes or not budgets:
        ap.error("--trials, --sizes and --budgets must not be empty")

    from ingest.tokenizer import load_tokenizer
    from retrieval.service import RetrieveOptions, Retriever

    started = time.perf_counter()
    work: Path = args.work
    base_cfg = bench_settings(work, "multi-needle")
    for _, fields in variants:  # a bad field is one line, before any work
        bench_settings(work, "multi-needle", **fields)
    counter = load_tokenizer(base_cfg.tokenizer.path)
    embedder = CachingEmbedder(base_cfg, cache_dir=work / "embeddings", memo_queries=True)
    base = base_slices(args.data, counter, args.slice_tokens)
    base_counts = counter.count_many(base)

    rows: list[dict[str, Any]] = []
    for size in sizes:
        label = short_tokens(size)
        slices = haystack(base, base_counts, counter, size)
        counts = counter.count_many(slices)
        for trial in range(args.trials):
            store, tasks = run_trial(args, work, label, trial, slices, counts, counter, embedder)
            try:
                for name, fields in variants:
                    retriever = Retriever(bench_settings(work, f"mn-{label}-{trial:03d}",
                                                         **fields), store, embedder, counter)
                    for task in (t for t in tasks if t.name in wanted):
                        for budget in budgets:
                            for layout in layouts:
                                t0 = time.perf_counter()
                                r = retriever.retrieve(task.question, RetrieveOptions(
                                    budget_tokens=budget, layout=layout))  # type: ignore[arg-type]
                                ms = (time.perf_counter() - t0) * 1000
                                got = score(r.packing.context, task.needles)
                                rows.append({
                                    "size": label, "trial": trial, "variant": name,
                                    "task": task.name, "budget": short_tokens(budget),
                                    "layout": layout, "needles": len(task.needles),
                                    "packed": got, "ms": round(ms, 2),
                                    "used": r.packing.used_tokens,
                                    "available": r.budget.available, "notes": r.packing.notes})
            finally:
                store.close()
            log(f"{label} trial {trial} done ({time.perf_counter() - started:.0f}s)")

    single = single_fact(args)
    print_table(rows, variants, args)
    for line in single.get("lines", []):
        print(line)
    print(f"wall time {time.perf_counter() - started:.0f}s; figures are from one run on a "
          "shared machine")
    path = write_results(args.out, {
        "benchmark": "multi_needle", "argv": sys.argv[1:], "rows": rows,
        "variants": dict(variants), "single_fact": single,
        "settings": {"chunking": base_cfg.chunking.model_dump(),
                     "retrieval": base_cfg.retrieval.model_dump()},
        "environment": environment()})
    print(f"results: {path}")


def print_table(rows: list[dict[str, Any]], variants: list[tuple[str, dict[str, Any]]],
                args: argparse.Namespace) -> None:
    groups: dict[tuple[str, str, str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        key = (r["task"], r["size"], r["budget"], r["layout"])
        groups.setdefault(key, {}).setdefault(r["variant"], []).append(r)
    names = [n for n, _ in variants]
    headers = ["task", "haystack", "budget", "layout",
               *[f"{n} all/mean" for n in names], f"{names[-1]} ms p50"]
    out = []
    for (task, size, budget, layout), per in groups.items():
        cells = []
        for n in names:
            rs = per.get(n, [])
            every = sum(r["packed"] == r["needles"] for r in rs) / max(1, len(rs))
            mean = statistics.mean(r["packed"] / r["needles"] for r in rs) if rs else 0.0
            cells.append(f"{every:.2f} / {mean:.2f}")
        ms = [r["ms"] for r in per.get(names[-1], [])]
        out.append([task, size, budget, layout, *cells,
                    f"{statistics.median(ms):.1f}" if ms else "-"])
    print(f"\nMulti-needle probes: {args.trials} trials per haystack size; all = share of "
          "trials with every needle in the packed context, mean = mean share of needles packed")
    for n, fields in variants:
        print(f"  {n}: {fields or 'the shipped settings'}")
    print(table(headers, out, right=[False, True, True, False, *[True] * (len(names) + 1)]))


def single_fact(args: argparse.Namespace) -> dict[str, Any]:
    """SQuAD recall@8k and NIAH, by the existing benches (each its own process)."""
    here = Path(__file__).resolve().parent
    out: dict[str, Any] = {"lines": []}
    if args.squad is not None:
        target = args.work / "squad_recall.json"
        subprocess.run([sys.executable, str(here / "squad_recall.py"), "--data", str(args.squad),
                        "--modes", "hybrid", "--budgets", "8k", "--sample",
                        str(args.squad_sample), "--out", str(target)], check=True)
        recall = json.loads(target.read_text())["results"]["hybrid"]["recall_at_budget"]
        out["squad_recall_at_8k"] = recall[str(parse_tokens("8k"))]
        out["lines"].append(f"SQuAD recall@8k (hybrid, {args.squad_sample} questions): "
                            f"{out['squad_recall_at_8k']:.3f}")
    if args.niah is not None:
        target = args.work / "niah.json"
        subprocess.run([sys.executable, str(here / "niah.py"), "--data", str(args.niah),
                        "--repeat", "1", "--out", str(target)], check=True)
        niah = json.loads(target.read_text())
        out["niah"] = {"passed": niah["passed"], "total": niah["total"]}
        out["lines"].append(f"NIAH: {niah['passed']}/{niah['total']} cells passed")
    return out


if __name__ == "__main__":
    main()
