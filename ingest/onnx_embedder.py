"""The embedding model as ONNX, run by onnxruntime: exported on this machine from the
sentence-transformers weights (export needs torch, once), then read with no PyTorch at all.

The export is kept under one folder per model directory content hash, so the shipped model
and a user's own directory work alike, and edited weights are never served stale. Inference
reproduces sentence-transformers' Transformer -> Pooling(mean) -> Normalize modules in numpy.

`python -m ingest.onnx_embedder` makes the export ahead of time (the Makefile's install does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SettingsError
from core.settings import EmbeddingSettings
from core.tracing import span
from ingest.embedder import WindowedEmbedder

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

FP32 = "model_fp32.onnx"
INT8 = "model_int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SKIP = {"README.md", ".gitattributes"}  # files that do not change a vector


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container's `--cpus`)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def runnable_threads(loadavg: str) -> int:
    """The threads runnable at this moment, from /proc/loadavg's text ("0.38 1.14 1.16 2/67
    12345" -> 2); the thread reading it is one of them."""
    return int(loadavg.split()[3].split("/", 1)[0])


def idle_cores(cores: int) -> int:
    """`cores` less the threads runnable right now (the caller included): how many more
    threads would find a core of their own. 0 where the kernel does not say (not Linux)."""
    try:
        fd = os.open("/proc/loadavg", os.O_RDONLY)  # ~10 us; a text-mode open() costs 30
        try:
            return cores - runnable_threads(os.read(fd, 256).decode())
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        return 0


def default_cache() -> Path:
    return Path(sys.prefix) / "share" / "rag" / "onnx"


def cache_root(settings: EmbeddingSettings) -> Path:
    return Path(settings.onnx_cache) if settings.onnx_cache else default_cache()


def _model_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")
                  if p.is_file() and p.name not in _SKIP and not p.name.startswith("."))


def model_hash(path: Path) -> str:
    """sha256 over the model directory's files (names and bytes). Reading 90 MB costs
    ~0.1 s, so the answer is remembered beside the exports, keyed by the files' sizes and
    mtimes: a query process pays a stat() per file."""
    files = _model_files(path)
    stats = hashlib.sha256(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        stats.update(f"{f.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    memo = default_cache() / "hashes" / stats.hexdigest()[:32]
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(path)}\n".encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(value)
    except OSError:
        pass  # a read-only environment re-hashes each time
    return value


def max_seq_length(path: Path) -> int:
    """sentence-transformers' limit (sentence_bert_config.json), capped by the model's
    position embeddings, as SentenceTransformer itself reads it."""
    limit = 512
    config = path / "config.json"
    if config.is_file():
        limit = int(json.loads(config.read_text()).get("max_position_embeddings", limit))
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        limit = min(limit, int(json.loads(st_config.read_text()).get("max_seq_length") or limit))
    return limit


def check_pooling(path: Path) -> None:
    """The numpy side implements mean pooling and normalisation only: refuse anything else
    rather than make different vectors than sentence-transformers would."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return  # a bare transformers directory: sentence-transformers adds mean pooling
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in json.loads(modules_file.read_text())]
    pooling = path / "1_Pooling" / "config.json"
    mean = not pooling.is_file() or json.loads(pooling.read_text()).get("pooling_mode_mean_tokens")
    if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]) or not mean:
        raise SettingsError("embedding.backend", f"onnx: {path} has modules {kinds} (mean "
                            "pooling only is supported): set embedding.backend=torch")


def export(model_dir: Path, root: Path) -> Path:
    """The folder holding `model_dir` as ONNX fp32 and int8, made now if missing."""
    folder = root / model_hash(model_dir)[:16]
    if (folder / INT8).is_file() and (folder / FP32).is_file():
        return folder
    check_pooling(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{folder.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _export_fp32(model_dir, tmp / "plain.onnx")
        _fuse(model_dir, tmp / "plain.onnx", tmp / FP32)
        (tmp / "plain.onnx").unlink()
        _quantize(tmp / FP32, tmp / INT8)
        (tmp / "source.json").write_text(json.dumps({"model": str(model_dir.resolve())}))
        try:
            tmp.rename(folder)  # whole or not at all: a killed export leaves only a dot folder
        except OSError:
            if not (folder / INT8).is_file():  # not a concurrent export that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _export_fp32(model_dir: Path, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Eager attention exports as plain MatMul/Softmax, which onnxruntime's BERT optimizer
    # fuses into its Attention kernel (SDPA's export is left unfused: 40% slower here).
    st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True,
                             model_kwargs={"attn_implementation": "eager"})
    encoder: Any = st[0].auto_model
    encoder.eval()

    class Hidden(torch.nn.Module):
        """Keyword arguments, as transformers 5 wants them; the last hidden state only."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {"batch": 0, "pieces": 1}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one needs onnxscript and gives no gain here.
        torch.onnx.export(Hidden(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out),
                          dynamo=False, input_names=list(INPUTS), output_names=["hidden"],
                          dynamic_axes={n: {v: k for k, v in axes.items()}
                                        for n in (*INPUTS, "hidden")},
                          opset_version=17)


def _fuse(model_dir: Path, plain: Path, out: Path) -> None:
    """onnxruntime's transformer fusions (Attention, SkipLayerNorm, BiasGelu, embeddings)."""
    from onnxruntime.transformers import optimizer

    config = json.loads((model_dir / "config.json").read_text())
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        fused = optimizer.optimize_model(str(plain), model_type="bert", opt_level=1,
                                         num_heads=int(config.get("num_attention_heads", 0)),
                                         hidden_size=int(config.get("hidden_size", 0)))
    finally:
        root.setLevel(level)
    fused.save_model_to_file(str(out))


def _quantize(fp32: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Measured on this CPU (AVX2, no VNNI: u8 x s8 products go through 16-bit sums), mean
    # cosine to torch fp32 on 60 texts: per-tensor int8 0.911; per-channel 0.990; per-channel
    # with each layer's FFN down-projection (the GELU output, the widest activations) kept
    # fp32 0.994, no slower within noise. Those 6 MatMuls are a third of the FLOPs.
    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep = [n.name for n in graph.node if n.op_type == "MatMul"
            and "/output/dense/" in n.name and "/attention/" not in n.name]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing": measured, not needed here
    try:
        # Weights int8 per output channel, activations uint8 quantized per batch at run time.
        # DefaultTensorType: the fused ops (com.microsoft domain) defeat shape inference.
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=keep, extra_options={"DefaultTensorType": 1})
    finally:
        root.setLevel(level)


class OnnxEmbedder(WindowedEmbedder):
    """onnxruntime + the `tokenizers` library + numpy pooling: no torch on this path once
    the export exists."""

    backend = "onnx"
    query_session: Any = None  # questions share `session` until prepare_queries()
    burst_session: Any = None  # and the one of `burst_threads`, while that many cores idle
    burst_threads = cores = 1

    def __init__(self, settings: EmbeddingSettings, path: Path):
        from tokenizers import Tokenizer

        folder = export(path, cache_root(settings))
        super().__init__(settings, path, max_seq_length(path))
        self.path = path
        self.precision = "int8" if settings.onnx_int8 else "fp32"
        self.query_threads = settings.query_threads
        self.inputs = self._load(folder, settings)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_pieces + 2)
        self.dim = self._width() or int(self._encode(["a"]).shape[1])
        self.signature = f"{self.backend}-{self.precision}/{folder.name[:12]}"

    def _load(self, folder: Path, settings: EmbeddingSettings) -> list[str]:
        """Opens the export in `folder` for inference; the names of the inputs it takes."""
        self.model_file = folder / (INT8 if settings.onnx_int8 else FP32)
        self.session = self._open(settings.threads)  # 0: one thread per core
        return [i.name for i in self.session.get_inputs()]

    def _open(self, threads: int, spin_in_run: bool = False) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one sequential graph: the cores go to each matmul
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # No spin-waiting between ops: on 2 cores shared with parsing/OCR threads (and other
        # processes) a spinning pool steals the cores it waits for (measured 8.4 -> 10.2 /s).
        # A question's session for idle cores spins between its ops (waking a sleeping
        # thread for each of a run's ~50 ops ate much of the second core's gain: 4.16 against
        # 5.23 ms for one thread, spinning within the run 3.65), and stops the moment its run
        # returns, so no core is kept busy between questions.
        opts.add_session_config_entry("session.intra_op.allow_spinning",
                                      "1" if spin_in_run else "0")
        if spin_in_run:
            opts.add_session_config_entry("session.force_spinning_stop", "1")
        return ort.InferenceSession(str(self.model_file), opts,
                                    providers=["CPUExecutionProvider"])

    def prepare_queries(self) -> None:
        """Sessions for questions, for a process that answers many (the API, MCP); ingest
        keeps the session of every core. A question runs on one thread unless
        `query_threads` cores are idle when it starts: on these 2 shared cores a run that
        waits for a second, busy core is slower (bench/query_sessions.py: 6.7 against 16.1 ms
        p50 at load 10), and on idle ones two threads spinning within the run are faster
        (3.65 against 5.23 ms p50; bench/README.md, "Query embedding on idle cores"). The
        vectors are the same bit for bit whichever runs
        (tests/ingest/test_onnx_embedder.py). `rag retrieve` asks one question and does not
        pay for opening them (~0.2 s for the one-thread session, measured in an earlier
        round)."""
        if self.backend != "onnx" or self.query_session is not None:  # not OpenVINO's graph
            return
        self.query_session = self._open(1)
        self.cores = usable_cores()
        burst = min(self.query_threads, self.cores)
        if burst > 1:
            self.burst_session, self.burst_threads = self._open(burst, spin_in_run=True), burst

    def _width(self) -> int:
        """The vector's width as the graph declares it; 0 when it is dynamic."""
        width = self.session.get_outputs()[0].shape[-1]
        return int(width) if isinstance(width, int) else 0

    def _infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The last hidden state for one batch of inputs."""
        return self.session.run(None, feed)[0]

    def _infer_query(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.query_session is None:
            return self._infer(feed)
        if self.burst_session is not None and idle_cores(self.cores) >= self.burst_threads - 1:
            return self.burst_session.run(None, feed)[0]
        return self.query_session.run(None, feed)[0]

    @cached_property
    def pieces(self) -> Any:
        """The tokenizer without truncation, for cutting long texts into windows: loaded on
        the first long text, so a process that embeds only questions never reads it twice."""
        from tokenizers import Tokenizer

        pieces = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        pieces.no_truncation()
        pieces.no_padding()
        return pieces

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        return self.pieces.encode(text, add_special_tokens=False).offsets

    def _query_vector(self, text: str) -> list[float]:
        """A text that fits one window goes straight to one run (no batch encoding, no
        windowing pass)."""
        if self.long_text != "truncate" and len(text) >= self.max_pieces * 2:
            return super()._query_vector(text)  # may need windows: the general path
        with span("rag.embed", rag__texts=1):
            return self._run(self.tokenizer.encode(text.strip()), self._infer_query)[0].tolist()

    def _encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        # sentence-transformers strips each text before tokenizing.
        encodings = self.tokenizer.encode_batch([t.strip() for t in texts])
        # One text per run, not batches: dynamic int8 scales activations per run, so a
        # batched vector would depend on its batch-mates (the same chunk embedded twice
        # would differ, and two stores of one corpus would rank differently); and with no
        # padding at all it is faster here too (60 real chunks: 9.0-10.3/s vs 7.1-7.9/s at
        # batch 64 sorted by length). A 256-piece window is already a large enough GEMM.
        if not encodings:
            return np.empty((0, getattr(self, "dim", 0)), dtype=np.float32)
        return np.concatenate([self._run(e) for e in encodings])

    def _run(self, encoding: Any,
             infer: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> np.ndarray:
        """The normalised mean-pooled vector of one text's encoding, as a (1, dim) array:
        one text per run, so there is no padding and every piece is pooled."""
        import numpy as np

        ids = np.array([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.array([encoding.type_ids], dtype=np.int64)}
        mean = (infer or self._infer)({k: feed[k] for k in self.inputs}).mean(axis=1)
        return mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)


def main() -> None:
    from core.settings import load_settings
    from ingest.embedder import model_path

    settings = load_settings().embedding
    folder = export(model_path(settings), cache_root(settings))
    print(f"ONNX export of {model_path(settings)}: {folder}")


if __name__ == "__main__":
    main()
