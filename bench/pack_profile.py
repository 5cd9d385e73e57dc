"""Where a new question's retrieve + pack time goes, on a pack.py store, with one checkout's
code (ROOT): pack.py's questions asked `--passes` times, each pass by a fresh retriever (so
every question reads its chunks from the store as a new one does) after one warm-up
question that is not counted.

    # cProfile, CPU clock (or --clock wall): the top entries by own time
    .venv/bin/python bench/pack_profile.py --root . --store /tmp/pack100k_p --clock cpu
    # py-spy over the passes, then its samples grouped into stages
    py-spy record -r 250 -f raw -o /tmp/spy.txt -- .venv/bin/python bench/pack_profile.py \\
        --root . --store /tmp/pack100k_p --passes 8
    .venv/bin/python bench/pack_profile.py --stages /tmp/spy.txt --passes 8

cProfile's per-call cost inflates the Python-heavy parts (2-3x); py-spy (without --idle)
samples the asking thread only while it runs, so the wait for Qdrant Edge's own search
threads is left out of its stages. Both print ratios for one run on one machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import Any

from _pack_serve import WARM_UP, pack_questions, use_checkout

# Stages by the innermost frame of a sample that names one; the first match of a frame wins.
STAGES = [
    ("Qdrant Edge retrieve (payload reads, in Rust)", ["EdgeStore.retrieve ("]),
    ("payloads to Python (ids, dicts: records)", ["records.<locals>"]),
    ("ChunkRef.from_payload, live check (read_live)", ["read_live"]),
    ("fused points to PointOut (scored)", ["scored (", "best_scored (", "by_score ("]),
    ("Qdrant Edge query, the asking thread's part", ["EdgeStore._query ("]),
    ("query embedding", ["embed_query ("]),
    ("header and table token counts", ["Packer.count_headers", "Packer.count_tables"]),
    ("neighbour ids (point_id)", ["point_id ("]),
    ("follow-up hops", ["Retriever._follow_hops"]),
    ("packing (Packer, Fill)", ["Packer.", "Fill.", "rank_hits (", "canonical_copies ("]),
]
REST = "the rest"


def passes(store_path: Path, budget: int, n: int, profile: cProfile.Profile | None) -> None:
    from core.choices import ContextMode
    from core.settings import load_settings
    from ingest.embedder import Embedder
    from ingest.store.edge import EdgeStore
    from ingest.tokenizer import load_tokenizer
    from retrieval.service import RetrieveOptions, Retriever

    settings = load_settings()
    embedder = Embedder(settings.embedding)
    store = EdgeStore(store_path)
    options = RetrieveOptions(budget_tokens=budget, context_mode=ContextMode.RETRIEVE)
    questions = pack_questions()
    try:
        for _ in range(n):
            retriever = Retriever(settings, store, embedder, load_tokenizer())
            retriever.retrieve(WARM_UP, options)
            if profile:
                profile.enable()
            for q in questions:
                retriever.retrieve(q, options)
            if profile:
                profile.disable()
    finally:
        store.close()


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in STAGES:
            if any(k in frame for k in keys):
                return name
    return REST


def stages(raw: Path, n: int) -> None:
    """py-spy's raw samples of the timed questions (not the warm-ups) by stage."""
    timed = f":{_timed_line()})"
    counts: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        if not any(f.startswith("passes (") and f.endswith(timed) for f in frames):
            continue
        name = stage_of(frames)
        counts[name] = counts.get(name, 0) + int(samples)
    total = sum(counts.values())
    asked = len(pack_questions()) * n
    print(f"{total} samples of the timed questions ({asked} questions)")
    for name in [*(s for s, _ in STAGES), REST]:
        share = counts.get(name, 0) / total
        print(f"{name:48s} {share:6.1%}  {counts.get(name, 0) / asked:6.2f} samples/q")


def _timed_line() -> int:
    """The line of `passes` that asks the timed questions."""
    source = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(source, 1)
                if text.strip() == "retriever.retrieve(q, options)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the checkout whose code answers (default: this one)")
    ap.add_argument("--store", type=Path, help="a pack.py store (a copy)")
    ap.add_argument("--budget", type=int, default=131_072)
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--clock", choices=["cpu", "wall"], help="cProfile with this clock")
    ap.add_argument("--top", type=int, default=20, help="cProfile entries printed")
    ap.add_argument("--stages", type=Path, help="a py-spy raw file to group into stages")
    args = ap.parse_args()
    if args.stages:
        stages(args.stages, args.passes)
        return
    if args.store is None:
        ap.error("--store is needed to profile")
    use_checkout(args.root)
    timer: Any = time.process_time if args.clock == "cpu" else time.perf_counter
    profile = cProfile.Profile(timer) if args.clock else None
    passes(args.store, args.budget, args.passes, profile)
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
