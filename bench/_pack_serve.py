"""The serving side of bench/pack.py, in a process of its own as `rag api` runs: open the
store, answer the questions (then once more, `again_*`), print one JSON line (open time,
p50/p95, peak RSS, and a digest of every packed context with its token count: two checkouts
that pack the same print the same digest).

Run with the checkout whose code answers (`pack.py --before DIR` runs it with an older one):

    python bench/_pack_serve.py ROOT STORE BUDGET [QUESTIONS...]  (default: pack.py's)

It imports nothing of bench/ (bench/ingest.py would hide the `ingest` package), so the
project's packages come from ROOT alone.
"""

from __future__ import annotations

import ast
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

WARM_UP = "What do the essays say about painting?"


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(retriever: Any, question: str, options: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of one retrieval."""
    t0, c0 = time.perf_counter(), time.process_time()
    retriever.retrieve(question, options)
    return time.perf_counter() - t0, time.process_time() - c0


def serve(path: Path, budget: int, queries: list[str]) -> dict:
    from core.choices import ContextMode
    from core.settings import load_settings
    from ingest.embedder import Embedder
    from ingest.store.edge import EdgeStore
    from ingest.tokenizer import load_tokenizer
    from retrieval.service import RetrieveOptions, Retriever

    settings = load_settings()
    embedder = Embedder(settings.embedding)
    embedder.prepare_queries()  # the question sessions `rag api` opens
    idle = rss_kib("VmRSS")
    t0 = time.perf_counter()
    store = EdgeStore(path)
    open_s = time.perf_counter() - t0
    retriever = Retriever(settings, store, embedder, load_tokenizer())
    options = RetrieveOptions(budget_tokens=budget, context_mode=ContextMode.RETRIEVE)
    retriever.retrieve(WARM_UP, options)  # not timed: loads the manifest, warms the model
    times, cpu, used, cands = [], [], 0, 0
    packed = hashlib.sha256()  # what was packed, so two checkouts can be compared
    for q in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        result = retriever.retrieve(q, options)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # this process's threads: less swayed by others
        used, cands = result.packing.used_tokens, result.candidates
        packed.update(f"{used}\n{result.packing.context}\n".encode())
    again = [timed(retriever, q, options) for q in queries]  # asked again: what was read is kept
    store.close()
    p50, p95 = percentiles(times)
    return {"open_s": round(open_s, 2), "ours_p50_ms": p50 * 1000, "ours_p95_ms": p95 * 1000,
            "ours_cpu_p50_ms": statistics.median(cpu) * 1000, "ours_used": used,
            "candidates": cands, "packed_sha256": packed.hexdigest()[:16],
            "again_p50_ms": statistics.median(w for w, _ in again) * 1000,
            "again_cpu_p50_ms": statistics.median(c for _, c in again) * 1000,
            "rss_gib": rss_kib("VmHWM") / 2**20,
            "rss_over_model_gib": (rss_kib("VmHWM") - idle) / 2**20}


def use_checkout(root: Path) -> None:
    """The project's packages from `root` alone: bench/ off sys.path, `root` first."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(root.resolve()))


def pack_questions() -> list[str]:
    """pack.py's questions, read from its source: importing it would import the project
    from this checkout (bench/_common.py), whichever ROOT is measured."""
    tree = ast.parse((Path(__file__).with_name("pack.py")).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "QUESTIONS":
            return list(ast.literal_eval(node.value))
    raise LookupError("bench/pack.py defines no QUESTIONS")


def main() -> None:
    root, store, budget, *queries = sys.argv[1:]
    use_checkout(Path(root))
    print(json.dumps(serve(Path(store), int(budget), queries or pack_questions())))


if __name__ == "__main__":
    main()
