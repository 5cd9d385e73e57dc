"""The llama.cpp server a command starts ends with that command, however it ends (SIGTERM,
SIGHUP, SIGKILL), and a server on the configured port is reused only when it is ours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.ports import free_port
from support.servers import stop_process

from core.errors import RagError
from core.settings import CPUServerSettings
from serving import llamacpp

ROOT = Path(__file__).resolve().parents[2]


def rag_process(*args: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """`rag ARGS...` in a subprocess of this checkout, with no RAG_* of the caller."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    clean.update({"PYTHONPATH": str(ROOT), "RAG_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=tmp_path, env=clean,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_server_pid(port: int, parent: subprocess.Popen[str], timeout_s: float) -> int:
    """The pid of the llama.cpp server `parent` started on `port`, once it serves."""
    record = llamacpp.pid_file(CPUServerSettings(port=port))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if parent.poll() is not None:
            pytest.fail(f"the command exited with {parent.returncode}: {parent.stderr.read()}")
        try:
            data = json.loads(record.read_text())
            if data["owner"] == parent.pid:
                return int(data["pid"])
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    stop_process(parent)  # type: ignore[arg-type]
    pytest.fail(f"no llama.cpp server on port {port} after {timeout_s:.0f} s")


def gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once `pid` has exited (a zombie waiting for init to reap it counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=lambda s: s.name)
def test_rag_serve_cpu_takes_its_server_along(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    parent = rag_process("serve", "cpu", "--port", str(port), tmp_path=tmp_path)
    child = wait_for_server_pid(port, parent, 120)
    try:
        parent.send_signal(sig)
        assert parent.wait(30) == -(signal.SIGTERM if sig == signal.SIGHUP else sig)
        assert gone(child), f"the llama.cpp server {child} outlived `rag serve cpu` ({sig.name})"
        assert not llamacpp.port_in_use(CPUServerSettings(port=port))
    finally:
        if not gone(child, 0):
            os.kill(child, signal.SIGKILL)
    assert "Traceback" not in parent.stderr.read()


@pytest.mark.slow
def test_rag_api_stopped_by_sigterm_stops_its_llm_server(tmp_path: Path) -> None:
    """As docker, systemd or Kubernetes stop it; the API starts the server while warming up."""
    llm_port = free_port()
    api = rag_process("api", "--port", str(free_port()), "--log-level", "warning",
                      tmp_path=tmp_path, RAG_CPU_SERVER__PORT=str(llm_port))
    child = wait_for_server_pid(llm_port, api, 180)
    try:
        api.send_signal(signal.SIGTERM)
        assert api.wait(30) == -signal.SIGTERM
        assert gone(child), f"the llama.cpp server {child} outlived `rag api`"
    finally:
        if not gone(child, 0):
            os.kill(child, signal.SIGKILL)
    assert "Traceback" not in api.stderr.read()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
        body = b'{"data": [{"id": "SmolLM2-135M-Instruct.Q4_1"}]}'  # even our model's id
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def foreign_listener() -> Iterator[int]:
    """A plain HTTP server that answers /v1/models like ours, and is not ours."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_foreign_server_on_the_port_is_refused_in_one_line(tmp_path: Path) -> None:
    with foreign_listener() as port:
        with pytest.raises(RagError, match=f"127.0.0.1:{port} .* not a llama.cpp server"):
            llamacpp.ensure_running(CPUServerSettings(port=port))
        r = rag_process("serve", "cpu", "--port", str(port), tmp_path=tmp_path)
        _, stderr = r.communicate(timeout=60)
    assert r.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: cpu_server.port: something already listens on "
                               f"127.0.0.1:{port}; stop it, choose another RAG_CPU_SERVER__PORT")


def test_a_server_without_our_pid_file_is_not_reused(llm_server: llamacpp.RunningServer,
                                                     tmp_path: Path) -> None:
    cfg = CPUServerSettings(port=llm_server.settings.port)  # type: ignore[attr-defined]
    assert llamacpp.is_ours(cfg)
    record = llamacpp.pid_file(cfg)
    kept = tmp_path / "kept.json"
    record.replace(kept)
    try:
        assert not llamacpp.is_ours(cfg)
        # Another process (this one started the server, so it would use its own).
        other = subprocess.run(
            [sys.executable, "-c", "from core.settings import CPUServerSettings as C\n"
             "from serving.llamacpp import ensure_running\n"
             f"ensure_running(C(port={cfg.port}))"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
            text=True, timeout=60)
        assert other.returncode == 1
        assert "not a llama.cpp server this project started" in other.stderr
        # A pid file naming a process that is not a llama.cpp server does not count either.
        record.write_text(json.dumps({"pid": os.getpid(), "owner": os.getpid(),
                                      "port": cfg.port, "model": llm_server.model}))
        assert not llamacpp.is_ours(cfg)
    finally:
        kept.replace(record)
    assert llamacpp.ensure_running(cfg) == llm_server.url
