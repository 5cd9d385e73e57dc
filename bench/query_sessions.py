"""Query embedding under onnxruntime session options, alternated in one process.

The int8 MiniLM export is opened once per variant (the shipped settings' session first:
two threads, no spinning); each round embeds one question with every variant in turn, so
the machine's other load falls on all of them alike. Only `session.run` is timed (the
question's encoding is made beforehand); wall and process CPU per run, and the load
average before and after. A spinning pool trades the second core's CPU for latency: its
CPU column says what it burns.

    .venv/bin/python bench/query_sessions.py --rounds 400
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.append(str(HERE))

VARIANTS = {"2 threads, no spinning (shipped)": (2, False), "1 thread": (1, False),
            "2 threads, spinning": (2, True)}
QUERIES = ["What did the founders learn about hiring?",
           "How long can the lamp run on its reserve batteries?",
           "Which essay explains why startups should do things that don't scale?",
           "what is a default alive company"]


def session(model: Path, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def feeds(embedder: Any, rounds: int) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for i in range(rounds):
        enc = embedder.tokenizer.encode(QUERIES[i % len(QUERIES)] + f" ({i})")
        ids = np.array([enc.ids], dtype=np.int64)
        out.append({"input_ids": ids, "attention_mask": np.ones_like(ids),
                    "token_type_ids": np.array([enc.type_ids], dtype=np.int64)})
    return out


def main(argv: list[str] | None = None) -> int:
    from _common import log, table

    from core.settings import load_settings
    from ingest.embedder import model_path
    from ingest.onnx_embedder import INT8, OnnxEmbedder, cache_root, export

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=400, help="questions embedded per variant")
    args = p.parse_args(argv)
    settings = load_settings().embedding.model_copy(update={"backend": "onnx", "onnx_int8": True})
    embedder = OnnxEmbedder(settings, model_path(settings))
    model = export(model_path(settings), cache_root(settings)) / INT8
    sessions = {name: session(model, *opts) for name, opts in VARIANTS.items()}
    inputs = feeds(embedder, args.rounds)
    wall: dict[str, list[float]] = {n: [] for n in sessions}
    cpu: dict[str, list[float]] = {n: [] for n in sessions}
    load_before = os.getloadavg()[0]
    log(f"{args.rounds} rounds x {len(sessions)} variants ...")
    for feed in inputs:
        for name, s in sessions.items():
            w, c = time.perf_counter(), time.process_time()
            s.run(None, feed)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    load_after = os.getloadavg()[0]
    base = statistics.median(wall[next(iter(sessions))])
    rows = []
    for name in sessions:
        times = sorted(wall[name])
        p50 = statistics.median(times)
        rows.append([name, f"{p50 * 1000:.2f}", f"{times[len(times) // 10] * 1000:.2f}",
                     f"{times[int(len(times) * 0.9)] * 1000:.2f}", f"{base / p50:.2f}x",
                     f"{statistics.median(cpu[name]) * 1000:.2f}"])
    print(table(["session", "p50 ms", "p10 ms", "p90 ms", "speed vs shipped", "CPU ms/run"],
                rows))
    print(f"load average {load_before:.1f} before, {load_after:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
