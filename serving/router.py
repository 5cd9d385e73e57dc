"""Cache-aware routing in front of several OpenAI-compatible replicas: vllm-router (PyPI
`vllm-router`, Apache-2.0; the `router` extra), a Rust load balancer for vLLM.

Its `cache_aware` policy keeps a prefix tree of the prompts it has sent to each worker and
sends a request to the worker holding the longest match, unless the load is out of balance;
so the turns of one conversation, whose prompt grows by appending, stay on the replica that
already holds their prefix in its KV cache. The app then talks to one URL (`RAG_LLM__URL`).
A plain list of URLs (`RAG_LLM__URLS`) is our own round robin (app/llm.py) instead: no extra
process, but every replica sees every conversation and none keeps its cache warm.

The router waits for each worker's `GET /health` before it routes: vLLM answers it, and so
does our CPU server (serving/llamacpp_server.py).

    render_command(["http://a:8000", "http://b:8000"], port=8000)   # the command line
    start([...], port=...)                                          # a router process
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from threading import Thread
from typing import IO

from core.errors import RagError
from serving.llamacpp import RunningServer
from serving.readiness import wait_ready

POLICIES = ("cache_aware", "consistent_hash", "round_robin", "power_of_two", "random")


def executable() -> str:
    """The `vllm-router` launcher of this environment (beside its Python first)."""
    beside = Path(sys.executable).with_name("vllm-router")
    found = str(beside) if beside.is_file() else shutil.which("vllm-router")
    if not found:
        raise RagError("vllm-router is not installed: pip install -e '.[router]'")
    return found


def render_command(worker_urls: list[str], port: int, host: str = "127.0.0.1",
                   policy: str = "cache_aware", metrics_port: int = 29000,
                   program: str = "vllm-router") -> list[str]:
    """The router's command line. Worker URLs are servers' roots (no `/v1`)."""
    if policy not in POLICIES:
        raise RagError(f"router policy: {policy!r} is not one of {', '.join(POLICIES)}")
    if not worker_urls:
        raise RagError("router: no worker URL")
    return [program, "--host", host, "--port", str(port),
            "--worker-urls", *(u.rstrip("/").removesuffix("/v1") for u in worker_urls),
            "--policy", policy,
            "--health-check-endpoint", "/health",
            "--prometheus-host", host, "--prometheus-port", str(metrics_port),
            "--log-level", "warning"]


def start(worker_urls: list[str], port: int, metrics_port: int, policy: str = "cache_aware",
          timeout_s: float = 60.0) -> RunningServer:
    """Starts a router on 127.0.0.1:`port` and waits until it routes (`/v1/models` through it)."""
    cmd = render_command(worker_urls, port, policy=policy, metrics_port=metrics_port,
                         program=executable())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log: deque[str] = deque(maxlen=200)
    Thread(target=_drain, args=(proc.stdout, log), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    server = RunningServer(proc, f"{url}/v1", f"vllm-router ({policy})", log)
    if wait_ready(url, timeout_s, alive=server.alive):
        return server
    server.stop()
    tail = "".join(log).strip().splitlines()[-1:] or ["(no output)"]
    raise RagError(f"vllm-router did not start on port {port}: {tail[0][:200]}")


def _drain(stream: IO[bytes], log: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        log.append(raw.decode("utf-8", "replace"))
