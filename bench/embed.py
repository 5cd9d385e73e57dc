"""Bare embedding per backend on the same real chunks, in one run: chunks/s and FLOP/s next to
this machine's peak, agreement with torch fp32 (the quality gate), and query embedding p50.

Rows: torch fp32 (sentence-transformers, the baseline), onnx fp32 and onnx int8 (this
project's export, onnxruntime without torch), openvino fp32 and int8 (the same export run by
OpenVINO, when the openvino extra is installed). Chunk texts are made from --data by our own
loaders and chunker (bench/ingest.py's chunk_texts), the first --chunks of them. Each backend
is loaded and warmed up before timing; runs are interleaved over --repeat.

Query embedding p50 is timed as the API asks questions (`prepare_queries()`: onnxruntime runs
a question on one thread, or on two while the second core is idle), one distinct question at a
time.

FLOPs are the model's useful work, counted per window actually embedded (padding excluded):
per word piece and layer 2 x (4 x 384^2 + 2 x 384 x 1536) for the projections and FFN, plus
4 x n x 384 for attention over n pieces; 6 layers (~5.6 GFLOP for a 256-piece window).

    .venv/bin/python bench/embed.py --data ../shared/data/docs --chunks 1000
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
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

BACKENDS = {"torch-fp32": {"backend": "torch"},
            "onnx-fp32": {"backend": "onnx", "onnx_int8": False},
            "onnx-int8": {"backend": "onnx", "onnx_int8": True},
            "openvino-fp32": {"backend": "openvino", "onnx_int8": False},
            "openvino-int8": {"backend": "openvino", "onnx_int8": True}}
HIDDEN, FFN, LAYERS = 384, 1536, 6
QUERIES = ["What did the committee decide about the budget?", "How is the table laid out?",
           "Who wrote the paper on document layout?", "When was the handbook published?",
           "Which river flooded in the spring?", "What is the main result of section 3?"]


def bench_ingest() -> Any:
    """bench/ingest.py as a module (its name would shadow the `ingest` package)."""
    spec = importlib.util.spec_from_file_location("bench_ingest", HERE / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def window_flops(pieces: int) -> float:
    per_piece = 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) + 4 * pieces * HIDDEN
    return float(LAYERS * pieces * per_piece)


def useful_flops(embedder: Any, texts: list[str], model: Path) -> float:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(embedder.max_pieces + 2)
    windows = [w for t in texts for w in embedder.windows(t)]
    return sum(window_flops(len(e.ids)) for e in tok.encode_batch([w.strip() for w in windows]))


def peak() -> dict[str, float]:
    """Upper bounds from the CPU's vector units (see bench/README.md for the arithmetic)."""
    flags = Path("/proc/cpuinfo").read_text()
    ghz = next((float(line.split(":")[1]) / 1000 for line in flags.splitlines()
                if line.startswith("cpu MHz")), 0.0)
    avx512 = "avx512f" in flags
    cores = os.cpu_count() or 1
    fp32_per_cycle = (2 * 16 * 2) if avx512 else (2 * 8 * 2)  # 2 FMA pipes x lanes x 2
    int8_per_cycle = 4 * fp32_per_cycle  # 4x the lanes; u8*s8 pairs summed (vpmaddubsw/VNNI)
    return {"cores": cores, "ghz": ghz, "avx512": float(avx512),
            "fp32": cores * ghz * 1e9 * fp32_per_cycle, "int8": cores * ghz * 1e9 * int8_per_cycle}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/docs"))
    p.add_argument("--chunks", type=int, default=1000, help="chunk texts embedded per run")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--queries", type=int, default=60, help="query embeddings timed per backend")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--threads", type=int, default=None, help="embedding.threads (default: all)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from _common import log, table, write_results

    from core.settings import load_settings
    from ingest.embedder import Embedder, model_path

    args = parse_args(argv)
    settings = load_settings(data_dir=Path(tempfile.mkdtemp(prefix="bench-embed-")))
    if args.threads is not None:
        settings.embedding.threads = args.threads
    bi = bench_ingest()
    files = bi.find_files(args.data.resolve(), None, False)
    texts, _ = bi.chunk_texts(settings, files)
    if not texts:
        log(f"no chunks from {args.data}")
        return 2
    while len(texts) < args.chunks:
        texts += texts[: args.chunks - len(texts)]
    texts = texts[: args.chunks]
    names = [n for n in args.backends.split(",") if n]
    embedders: dict[str, Any] = {}
    loads: dict[str, float] = {}
    for name in names:
        t = time.perf_counter()
        embedders[name] = Embedder(settings.embedding.model_copy(update=BACKENDS[name]))
        loads[name] = time.perf_counter() - t
        embedders[name].embed(texts[:64])
    flops = useful_flops(embedders[names[0]], texts, model_path(settings.embedding))
    runs: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, Any] = {}
    for r in range(args.repeat):
        for name in names:
            log(f"run {r + 1}/{args.repeat}: {name} on {len(texts)} chunks ...")
            gc.collect()
            t = time.perf_counter()
            vectors[name] = embedders[name].embed(texts)
            runs[name].append(time.perf_counter() - t)
    query_ms: dict[str, float] = {}
    for name in names:
        e = embedders[name]
        e.prepare_queries()  # the sessions the API and MCP ask questions on
        for i in range(10):
            e.embed_query(f"warm-up question {i}")
        times = []
        for i in range(args.queries):
            t = time.perf_counter()
            e.embed_query(QUERIES[i % len(QUERIES)] + f" ({i})")
            times.append(time.perf_counter() - t)
        query_ms[name] = statistics.median(times) * 1000
    limits = peak()
    base = names[0]
    rows = []
    results: dict[str, Any] = {"chunks": len(texts), "useful_gflop": flops / 1e9, "peak": limits}
    for name in names:
        seconds = statistics.median(runs[name])
        rate = len(texts) / seconds
        gflops = flops / seconds / 1e9
        top = limits["int8" if name.endswith("int8") else "fp32"] / 1e9
        ref = vectors.get("torch-fp32")
        cos = (vectors[name] * ref).sum(axis=1) if ref is not None else np.array([float("nan")])
        rows.append([name, f"{rate:.1f}", f"{rate / (len(texts) / statistics.median(runs[base])):.2f}x",
                     f"{gflops:.1f}", f"{top:.0f}", f"{100 * gflops / top:.0f}%",
                     f"{cos.mean():.4f}", f"{cos.min():.4f}", f"{query_ms[name]:.1f}",
                     f"{loads[name]:.1f}"])
        results[name] = {"chunks_per_s": rate, "gflop_per_s": gflops, "peak_gflop_per_s": top,
                         "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                         "query_p50_ms": query_ms[name], "load_s": loads[name], "runs": runs[name]}
    print(table(["backend", "chunks/s", f"vs {base}", "GFLOP/s", "peak", "of peak",
                 "cos mean", "cos min", "query p50 ms", "load s"], rows))
    print(f"{len(texts)} chunks from {args.data}, {flops / 1e9:.0f} GFLOP of model work; peak: "
          f"{limits['cores']:.0f} cores x {limits['ghz']:.2f} GHz, "
          f"{'AVX-512' if limits['avx512'] else 'AVX2 (no AVX-512/VNNI)'}")
    path = write_results(HERE / "results" / "embed.json", results)
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
