"""Prefill of a Llama-3.1-8B-shaped model at 8k, 32k and 128k tokens on one GPU, with PyTorch's
flash SDPA backend: seconds, tokens/s, the share of the GPU's bf16 peak it reaches, and the
KV-cache bytes per token against the arithmetic.

The weights are random (the config is written here: no download); prefill cost depends on the
shapes only. The attention runs inside `sdpa_kernel(FLASH_ATTENTION)`, so a run that could not
use FlashAttention fails instead of quietly measuring another kernel.

    .venv/bin/python bench/gpu_prefill.py                 # GPU: 8k, 32k, 128k
    .venv/bin/python bench/gpu_prefill.py --tiny          # any machine: a tiny shape, on CPU

FLOPs per prefill: 2 x (matmul parameters) x tokens for the dense layers, plus causal attention,
2 x layers x tokens^2 x (heads x head_dim) (QK^T and AV are 2*n^2*d each; causal keeps half);
the LM head runs on the last token only, as a serving engine's prefill does.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _format import parse_tokens, short_tokens, table, write_results

RESULTS = Path(__file__).resolve().parent / "results"

# Llama 3.1 8B's published config (meta-llama/Llama-3.1-8B, config.json), written out here.
LLAMA31_8B: dict[str, Any] = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "tie_word_embeddings": False,
}
TINY: dict[str, Any] = {**LLAMA31_8B, "hidden_size": 64, "intermediate_size": 224,
                        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                        "vocab_size": 512}

# Dense bf16 tensor-core peaks from NVIDIA's datasheets (TFLOP/s, without sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0,
                    "H100": 756.0, "A100": 312.0, "L40S": 362.05, "L4": 121.0, "A10": 125.0}


@dataclass
class Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> Shape:
        return cls(cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
                   cfg["num_key_value_heads"], cfg["intermediate_size"], cfg["vocab_size"])

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def layer_matmul_params(self) -> int:
        kv = self.kv_heads * self.head_dim
        attention = self.hidden * self.hidden * 2 + self.hidden * kv * 2  # q, o; k, v
        return attention + 3 * self.hidden * self.ffn  # gate, up, down

    def parameters(self) -> int:
        """Every weight: embeddings, layers (with their two norms), final norm, LM head."""
        per_layer = self.layer_matmul_params() + 2 * self.hidden
        return 2 * self.vocab * self.hidden + self.layers * per_layer + self.hidden

    def prefill_flops(self, tokens: int) -> float:
        dense = 2.0 * self.layers * self.layer_matmul_params() * tokens
        attention = 2.0 * self.layers * tokens * tokens * self.hidden
        return dense + attention + 2.0 * self.vocab * self.hidden  # LM head: last token

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes  # K and V


def build_model(cfg: dict[str, Any], device: str, dtype: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**cfg)
    config._attn_implementation = "sdpa"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def prefill(model: Any, tokens: int, chunk: int, device: str) -> tuple[float, int]:
    """Seconds for one prefill of `tokens` random ids (in chunks of `chunk` when smaller), and
    the bytes the KV cache holds afterwards."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import DynamicCache

    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)
    cache = DynamicCache()
    # transformers renamed `past_key_values` to `cache` (5.x); the GPU machine may have either.
    keyword = "cache" if "cache" in inspect.signature(type(model.model).forward).parameters \
        else "past_key_values"
    # One prefill needs no mask (is_causal), which FlashAttention takes; a chunk after the first
    # attends to the cache through a mask, which only the memory-efficient kernel takes.
    backends = [SDPBackend.FLASH_ATTENTION]
    if chunk < tokens:
        backends.append(SDPBackend.EFFICIENT_ATTENTION)
    if device != "cuda":
        backends.append(SDPBackend.MATH)
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode(), sdpa_kernel(backends):
        synchronize()
        start = time.perf_counter()
        for at in range(0, tokens, chunk):
            part = ids[:, at:at + chunk]
            hidden = model.model(input_ids=part, use_cache=True, **{keyword: cache}).last_hidden_state
        model.lm_head(hidden[:, -1:, :])
        synchronize()
        seconds = time.perf_counter() - start
    return seconds, _cache_bytes(cache)


def _cache_bytes(cache: Any) -> int:
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers >= 4.56: one object per layer
        tensors = [t for layer in layers for t in (layer.keys, layer.values) if t is not None]
    else:
        tensors = list(cache.key_cache) + list(cache.value_cache)
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_flops(device: str, given: float | None) -> tuple[float | None, str]:
    if given:
        return given * 1e12, "--peak"
    if device != "cuda":
        return None, "none (CPU)"
    import torch

    name = torch.cuda.get_device_name()
    for key, tflops in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return tflops * 1e12, f"{name} datasheet"
    return None, f"{name}: unknown, pass --peak"


def measured_matmul_flops(device: str, dtype: Any, n: int = 8192) -> float:
    """What one large bf16 matmul reaches here: the practical ceiling beside the datasheet's."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    sync()
    return 5 * 2.0 * n ** 3 / (time.perf_counter() - start)


def measure(model: Any, shape: Shape, tokens: int, chunk: int, device: str, dtype: Any,
            peak: float | None, matmul: float) -> dict[str, Any]:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds, kv = prefill(model, tokens, chunk, device)
    flops = shape.prefill_flops(tokens) / seconds
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "tflops": flops / 1e12, "peak_ratio": flops / peak if peak else None,
            "matmul_ratio": flops / matmul, "kv_bytes_per_token": kv / tokens,
            "kv_expected": shape.kv_bytes_per_token(dtype_bytes=torch.finfo(dtype).bits // 8),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    cfg = TINY if args.tiny else LLAMA31_8B
    shape = Shape.of(cfg)
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if device == "cpu" and not args.tiny:
        sys.exit("gpu_prefill: no CUDA device here; run with --tiny to check the script on a CPU")
    model = build_model(cfg, device, dtype)
    counted = sum(p.numel() for p in model.parameters())
    peak, peak_source = peak_flops(device, args.peak)
    matmul = measured_matmul_flops(device, dtype, 8192 if device == "cuda" else 256)
    prefill(model, min(args.sizes), args.chunk or min(args.sizes), device)  # warm-up
    rows = [measure(model, shape, tokens, args.chunk or tokens, device, dtype, peak, matmul)
            for tokens in args.sizes]
    return {"shape": asdict(shape), "parameters": counted, "parameters_expected": shape.parameters(),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "dtype": str(dtype), "torch": torch.__version__, "peak_flops": peak,
            "peak_source": peak_source, "matmul_flops": matmul, "chunk": args.chunk, "rows": rows}


def report(result: dict[str, Any]) -> str:
    lines = [f"device {result['device']} · {result['dtype']} · torch {result['torch']} · "
             f"{result['parameters']:,} parameters (config arithmetic: "
             f"{result['parameters_expected']:,}) · bf16 peak: "
             + (f"{result['peak_flops'] / 1e12:.0f} TFLOP/s ({result['peak_source']})"
                if result["peak_flops"] else result["peak_source"])
             + f" · one large matmul reaches {result['matmul_flops'] / 1e12:.3g} TFLOP/s"]
    rows = [[short_tokens(r["tokens"]), f"{r['seconds']:.3f}", f"{r['tokens_per_s']:,.0f}",
             f"{r['tflops']:.3g}", f"{r['peak_ratio']:.2f}" if r["peak_ratio"] else "-",
             f"{r['matmul_ratio']:.2f}", f"{r['kv_bytes_per_token'] / 1024:.1f} KiB",
             f"{r['kv_expected'] / 1024:.1f} KiB",
             f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] else "-"] for r in result["rows"]]
    lines.append(table(["tokens", "seconds", "tokens/s", "TFLOP/s", "/ peak", "/ matmul",
                        "KV per token", "arithmetic", "peak GiB"], rows))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="prompt lengths (default 8k,32k,128k; --tiny: 256,1k)")
    parser.add_argument("--chunk", type=parse_tokens, default=0,
                        help="prefill in chunks of this many tokens (default: the whole prompt at once)")
    parser.add_argument("--peak", type=float, default=None, help="the GPU's bf16 peak in TFLOP/s")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_prefill.json")
    args = parser.parse_args()
    sizes = args.sizes or ("256,1k" if args.tiny else "8k,32k,128k")
    args.sizes = [parse_tokens(s) for s in sizes.split(",")]
    result = run(args)
    print(report(result))
    write_results(args.out, result)
    bad = [r for r in result["rows"] if r["kv_bytes_per_token"] != r["kv_expected"]]
    if bad or result["parameters"] != result["parameters_expected"]:
        print(json.dumps({"mismatch": bad, "parameters": result["parameters"]}), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
