"""vLLM for production: Llama 3.1 with FlashAttention at 128k, rendered from settings.

The flags follow vLLM's engine-argument docs (v0.20+): the attention backend is chosen with
`--attention-backend` (the VLLM_ATTENTION_BACKEND variable is gone in current releases),
prefix caching and chunked prefill are explicit, and `/v1/models` reports `max_model_len`,
which the app reads to size its budget. The app never imports vllm.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import deque

from core.errors import RagError, SettingsError
from core.settings import VLLMSettings

# Documented sizes (docs/deploy.md has the memory arithmetic).
PRESETS: dict[str, dict[str, object]] = {
    "8b": {"model": "meta-llama/Llama-3.1-8B-Instruct", "tensor_parallel_size": 1},
    "70b": {"model": "meta-llama/Llama-3.1-70B-Instruct", "tensor_parallel_size": 4},
    "405b-fp8": {"model": "meta-llama/Llama-3.1-405B-Instruct-FP8", "tensor_parallel_size": 8,
                 "quantization": "fp8", "kv_cache_dtype": "fp8"},
}


def preset(name: str, **overrides: object) -> VLLMSettings:
    if name not in PRESETS:
        raise SettingsError("--preset", f"'{name}' is not one of {', '.join(PRESETS)}")
    return VLLMSettings.model_validate({**PRESETS[name], **overrides})


def render_command(cfg: VLLMSettings) -> list[str]:
    """The `vllm serve` command line for `cfg` (also what docker-compose runs)."""
    cmd = [
        "vllm", "serve", cfg.model,
        "--served-model-name", cfg.served_model_name,
        "--host", cfg.host,
        "--port", str(cfg.port),
        "--max-model-len", str(cfg.max_model_len),
        "--attention-backend", cfg.attention_backend,
        "--dtype", cfg.dtype,
        "--gpu-memory-utilization", f"{cfg.gpu_memory_utilization:g}",
        "--tensor-parallel-size", str(cfg.tensor_parallel_size),
        "--max-num-batched-tokens", str(cfg.max_num_batched_tokens),
        "--enable-prefix-caching" if cfg.enable_prefix_caching else "--no-enable-prefix-caching",
        "--enable-chunked-prefill" if cfg.enable_chunked_prefill else "--no-enable-chunked-prefill",
    ]
    if cfg.kv_cache_dtype != "auto":
        cmd += ["--kv-cache-dtype", cfg.kv_cache_dtype]
    if cfg.quantization:
        cmd += ["--quantization", cfg.quantization]
    if cfg.api_key:
        cmd += ["--api-key", cfg.api_key]
    return cmd + list(cfg.extra_args)


_KV_TOO_SMALL = re.compile(
    r"(larger than the maximum number of tokens that can be stored in KV cache|"
    r"No available memory for the cache blocks|KV cache is needed, which is larger than)",
    re.IGNORECASE)
_OOM = re.compile(r"(CUDA out of memory|OutOfMemoryError)", re.IGNORECASE)
_NO_GPU = re.compile(r"(No CUDA GPUs are available|Failed to infer device type|"
                     r"no NVIDIA driver|Found no NVIDIA driver)", re.IGNORECASE)


def explain_failure(log_tail: str, cfg: VLLMSettings) -> str:
    """One line saying why vLLM stopped, from the end of its log."""
    if _KV_TOO_SMALL.search(log_tail):
        return (f"the GPU's KV cache cannot hold a {cfg.max_model_len:,}-token context: lower "
                "vllm.max_model_len, raise vllm.gpu_memory_utilization, set vllm.kv_cache_dtype=fp8 "
                "or add GPUs (vllm.tensor_parallel_size)")
    if _OOM.search(log_tail):
        return ("the GPU ran out of memory loading the model: use a smaller model, more GPUs "
                "(vllm.tensor_parallel_size) or quantization")
    if _NO_GPU.search(log_tail):
        return "no usable GPU: vLLM needs an NVIDIA GPU; use `rag serve cpu` on this machine"
    last = [line for line in log_tail.splitlines() if line.strip()][-1:] or ["(no output)"]
    return f"vLLM exited: {last[0][:200]}"


def serve(cfg: VLLMSettings) -> int:
    """Runs vLLM in the foreground, reports readiness and a clear reason when it dies."""
    from serving.readiness import is_ready

    if shutil.which("vllm") is None:
        raise RagError("vllm is not installed: pip install -e '.[gpu]' on a machine with an "
                       "NVIDIA GPU, or use `rag serve cpu`")
    cmd = render_command(cfg)
    print("starting: " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    tail: deque[str] = deque(maxlen=200)
    url = f"http://127.0.0.1:{cfg.port}"
    deadline = time.monotonic() + cfg.startup_timeout_s
    announced = False
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        tail.append(line)
        started = "Application startup complete" in line or "Uvicorn running" in line
        if not announced and started and is_ready(url, cfg.api_key, path="/health"):
            print(f"ready: {url}/v1 ({cfg.served_model_name}, {cfg.max_model_len:,} tokens)",
                  file=sys.stderr)
            announced = True
        if not announced and time.monotonic() > deadline:
            proc.terminate()
            raise RagError(f"vLLM was not ready after {cfg.startup_timeout_s:.0f} s")
    code = proc.wait()
    if code != 0:
        raise RagError(explain_failure("".join(tail), cfg))
    return code
