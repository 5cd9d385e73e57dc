"""`rag retrieve "..." --json` from a shell: wall and CPU seconds of whole processes, this
checkout against another tree (--before, e.g. `git worktree add /tmp/before HEAD~3`),
runs interleaved so the machine's load falls on both alike.

Each run is a fresh `python -m app.cli` with PYTHONPATH set to the tree and the working
directory outside both (a checkout in the current directory would shadow PYTHONPATH), on
a store already built (`RAG_DATA_DIR=D rag ingest ../shared/data/niah/essays`); the page
cache is warm after the first pair, which is not counted. Both trees must print the same
JSON (less its `seconds`), or the run stops.

    .venv/bin/python bench/retrieve_startup.py --data-dir D --before /tmp/before --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))

QUESTION = "What did the founders learn?"


def run_once(tree: Path, data_dir: Path, question: str, cwd: str) -> tuple[float, float, str]:
    """(wall s, user+sys CPU s, the JSON less its timing) of one retrieve process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "RAG_DATA_DIR": str(data_dir)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app.cli", "retrieve", question, "--json"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result.pop("seconds", None)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.dumps(result, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    from _common import log, table

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="a data directory with a store")
    p.add_argument("--before", type=Path, required=True, help="the tree to compare with")
    p.add_argument("--runs", type=int, default=5, help="timed runs per tree")
    p.add_argument("--question", default=QUESTION)
    args = p.parse_args(argv)
    trees = {"before": args.before.resolve(), "this checkout": ROOT}
    cwd = tempfile.mkdtemp(prefix="bench-retrieve-")
    outputs = {name: run_once(tree, args.data_dir, args.question, cwd)[2]
               for name, tree in trees.items()}  # warms the page cache
    if outputs["before"] != outputs["this checkout"]:
        raise SystemExit("the two trees print different retrievals")
    wall: dict[str, list[float]] = {n: [] for n in trees}
    cpu: dict[str, list[float]] = {n: [] for n in trees}
    loads = [os.getloadavg()[0]]
    for r in range(args.runs):
        log(f"run {r + 1}/{args.runs} ...")
        for name, tree in trees.items():
            w, c, _ = run_once(tree, args.data_dir, args.question, cwd)
            wall[name].append(w)
            cpu[name].append(c)
        loads.append(os.getloadavg()[0])
    base_wall, base_cpu = statistics.median(wall["before"]), statistics.median(cpu["before"])
    rows = [[name, " / ".join(f"{w:.2f}" for w in wall[name]),
             f"{statistics.median(wall[name]):.2f}", f"{base_wall / statistics.median(wall[name]):.2f}x",
             " / ".join(f"{c:.2f}" for c in cpu[name]), f"{statistics.median(cpu[name]):.2f}",
             f"{base_cpu / statistics.median(cpu[name]):.2f}x"] for name in trees]
    print(table(["tree", "wall s", "median", "vs before", "user+sys CPU s", "median",
                 "vs before"], rows))
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
