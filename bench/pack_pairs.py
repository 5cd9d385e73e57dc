"""Retrieve + pack on one store by two checkouts, alternated: before, after, before, after...
Each run is `bench/_pack_serve.py` in a process of its own (open the store, answer pack.py's
questions, then the same again), with the load average read before and after it. Prints a
row per run and the medians; exits 1 when the two checkouts packed different contexts
(`packed_sha256` covers every packed context and its token count), so a speed-up that
changes what is packed never reads as one.

    .venv/bin/python bench/pack_pairs.py --before /tmp/base --store /tmp/pack100k_p --pairs 3

The store is only read, but a search may leave Qdrant Edge's files rewritten: point it at a
copy (`cp -a`). Figures are wall and CPU ms per question from one machine, shared or not:
compare the two trees by their ratio within a run, and read the load column.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _format import table
from _pack_serve import pack_questions

HERE = Path(__file__).resolve().parent
SERVE = HERE / "_pack_serve.py"


def serve(root: Path, store: Path, budget: int, questions: list[str]) -> dict[str, Any]:
    """One `_pack_serve.py` run with `root`'s code, and the 1-minute load before and after."""
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, str(SERVE), str(root), str(store), str(budget),
                           *questions], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{root}: _pack_serve.py failed: {done.stderr.strip().splitlines()[-1:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {**row, "load_before": load, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="the checkout before the change")
    ap.add_argument("--after", type=Path, default=HERE.parent, help="default: this checkout")
    ap.add_argument("--store", type=Path, required=True, help="a pack.py store (a copy)")
    ap.add_argument("--budget", type=int, default=131_072)
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    qs = pack_questions()  # pack.py's own, so the figures compare with its rows
    runs = [(pair, name, serve(root.resolve(), args.store, args.budget, qs))
            for pair in range(1, args.pairs + 1)
            for name, root in (("before", args.before), ("after", args.after))]
    print(table(["pair", "tree", "load before / after", "p50 ms", "p95 ms", "CPU p50 ms",
                 "again p50 / CPU ms", "tokens", "packed_sha256"],
                [[pair, name, f"{r['load_before']:.1f} / {r['load_after']:.1f}",
                  f"{r['ours_p50_ms']:.1f}", f"{r['ours_p95_ms']:.1f}",
                  f"{r['ours_cpu_p50_ms']:.1f}",
                  f"{r['again_p50_ms']:.1f} / {r['again_cpu_p50_ms']:.1f}", r["ours_used"],
                  r["packed_sha256"]] for pair, name, r in runs]))
    for key, label in (("ours_p50_ms", "wall p50"), ("ours_cpu_p50_ms", "CPU p50")):
        before, after = (statistics.median(r[key] for _, n, r in runs if n == name)
                         for name in ("before", "after"))
        print(f"median {label}: before {before:.1f} ms, after {after:.1f} ms "
              f"({after / before:.2f}x)")
    digests = {r["packed_sha256"] for _, _, r in runs}
    if len(digests) != 1:
        sys.exit(f"the two checkouts packed different contexts: {sorted(digests)}")
    print(f"every run packed the same contexts ({digests.pop()})")


if __name__ == "__main__":
    main()
