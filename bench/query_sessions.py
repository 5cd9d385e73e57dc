"""Query embedding: the shipped int8 export under its session options, against the recipes
that were not shipped, each in a process of its own.

A variant is a model file and a session (threads, spinning: off, on, or only within a run,
ORT's `session.force_spinning_stop`). The API and MCP ask a question on the shipped export's
one-thread session, or on its two-thread session spinning within a run while the second core
is idle (ingest/onnx_embedder.py `prepare_queries`). Each variant runs in its own child
process, in turn, `--passes` times, so the machine's other load falls on all of them alike and
a spinning pool never runs beside another variant (it keeps a core busy after its own run).
Only `session.run` is timed, on the same questions in every variant (their encodings are made
beforehand); the child's CPU per run (every thread of it), the question's word pieces, and the
mean cosine of its vectors to the fp32 export's, which is how far the recipe's vectors are
from the exact ones (the shipped int8 recipe keeps each layer's FFN down-projection in fp32;
"every MatMul int8" quantizes those too).

    .venv/bin/python bench/query_sessions.py --rounds 400
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(ROOT))
sys.path.append(str(HERE))

SHIPPED = "int8 export, 1 thread (API, MCP: busy cores)"
# name: (model, threads, spinning: "off" | "on" | "run"); the model is the export's file or
# "all-int8"
VARIANTS = {SHIPPED: ("int8", 1, "off"),
            "int8 export, 2 threads (rag retrieve)": ("int8", 2, "off"),
            "int8 export, 2 threads spinning": ("int8", 2, "on"),
            "int8 export, 2 threads spinning within a run (API, MCP: idle cores)":
                ("int8", 2, "run"),
            "every MatMul int8 (not shipped), 1 thread": ("all-int8", 1, "off"),
            "every MatMul int8 (not shipped), 2 spinning": ("all-int8", 2, "on"),
            "fp32 export, 1 thread": ("fp32", 1, "off")}
QUERIES = ["What did the founders learn about hiring?",
           "How long can the lamp run on its reserve batteries?",
           "Which essay explains why startups should do things that don't scale?",
           "what is a default alive company"]


def session(model: Path, threads: int, spinning: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning",
                                  "0" if spinning == "off" else "1")
    if spinning == "run":
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def questions(rounds: int) -> list[str]:
    return [QUERIES[i % len(QUERIES)] + f" ({i})" for i in range(rounds)]


def worker(model: Path, threads: int, spinning: str, rounds: int) -> dict[str, Any]:
    """One variant's runs: wall and CPU seconds per run, pieces, and the pooled vectors."""
    import numpy as np

    from core.settings import load_settings
    from ingest.embedder import model_path
    from ingest.onnx_embedder import OnnxEmbedder

    settings = load_settings().embedding.model_copy(update={"backend": "onnx"})
    tokenizer = OnnxEmbedder(settings, model_path(settings)).tokenizer
    s = session(model, threads, spinning)
    names = [i.name for i in s.get_inputs()]
    feeds = []
    for text in questions(rounds):
        enc = tokenizer.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}
        feeds.append({k: feed[k] for k in names})
    for feed in feeds[:20]:  # warm: the first runs allocate
        s.run(None, feed)
    wall, cpu, vectors = [], [], []
    for feed in feeds:
        w, c = time.perf_counter(), time.process_time()
        hidden = s.run(None, feed)[0]
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
        mean = hidden.mean(axis=1)[0]
        vectors.append((mean / np.linalg.norm(mean)).tolist())
    return {"wall": wall, "cpu": cpu, "vectors": vectors,
            "pieces": statistics.median(len(f["input_ids"][0]) for f in feeds)}


def all_int8(fp32: Path, out: Path) -> Path:
    """The shipped quantization (ingest/onnx_embedder.py `_quantize`) without its fp32
    exceptions: every MatMul int8 per output channel."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": 1})
    return out


def run_child(model: Path, threads: int, spinning: str, rounds: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, "--worker", str(model), str(threads),
                           spinning, "--rounds", str(rounds)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=400, help="questions per variant, all passes")
    p.add_argument("--passes", type=int, default=4, help="turns of every variant")
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "THREADS", "SPIN"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        model, threads, spin = args.worker
        print(json.dumps(worker(Path(model), int(threads), spin, args.rounds)))
        return 0
    return compare(args.rounds, args.passes)


def compare(rounds: int, passes: int) -> int:
    import numpy as np
    from _common import log, table

    from core.settings import load_settings
    from ingest.embedder import model_path
    from ingest.onnx_embedder import FP32, INT8, cache_root, export

    settings = load_settings().embedding
    folder = export(model_path(settings), cache_root(settings))
    with tempfile.TemporaryDirectory() as tmp:
        models = {"int8": folder / INT8, "fp32": folder / FP32,
                  "all-int8": all_int8(folder / FP32, Path(tmp) / "all_int8.onnx")}
        per_pass = max(1, rounds // passes)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
        load_before = os.getloadavg()[0]
        log(f"{passes} passes x {len(VARIANTS)} variants x {per_pass} questions ...")
        for _ in range(passes):
            for name, (model, threads, spinning) in VARIANTS.items():
                runs[name].append(run_child(models[model], threads, spinning, per_pass))
        load_after = os.getloadavg()[0]
    merged = {name: {k: [x for r in rs for x in r[k]] for k in ("wall", "cpu", "vectors")}
              for name, rs in runs.items()}
    exact = np.array(merged["fp32 export, 1 thread"]["vectors"])
    base = statistics.median(merged[SHIPPED]["wall"])
    rows = []
    for name, m in merged.items():
        times = sorted(m["wall"])
        p50 = statistics.median(times)
        cosine = float((np.array(m["vectors"]) * exact).sum(axis=1).mean())
        rows.append([name, f"{p50 * 1000:.2f}", f"{times[len(times) // 10] * 1000:.2f}",
                     f"{times[int(len(times) * 0.9)] * 1000:.2f}", f"{base / p50:.2f}x",
                     f"{statistics.median(m['cpu']) * 1000:.2f}", f"{cosine:.5f}"])
    print(table(["variant", "p50 ms", "p10 ms", "p90 ms", "speed vs shipped", "CPU ms/run",
                 "cosine to fp32"], rows))
    print(f"{runs[SHIPPED][0]['pieces']:.0f} word pieces a question (median); load average "
          f"{load_before:.1f} before, {load_after:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
