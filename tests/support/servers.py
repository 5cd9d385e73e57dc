"""Servers a test starts: an ASGI app under uvicorn on a background thread, and subprocesses
waited for until they answer (serving/readiness.py polls, as production does) and stopped."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from serving.readiness import wait_ready

from .ports import free_port


@contextmanager
def serve_in_thread(app: FastAPI, timeout_s: float = 30) -> Iterator[str]:
    """Runs `app` with uvicorn on a free loopback port on a background thread; yields its
    base URL once /healthz answers."""
    import uvicorn

    from app.api.server import HTTP_PROTOCOL

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="on", http=HTTP_PROTOCOL))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, timeout_s, path="/healthz", alive=thread.is_alive):
            raise RuntimeError(f"the API server on port {port} did not start")
        yield url
    finally:
        server.should_exit = True
        thread.join(15)


def wait_process_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float,
                       log: Callable[[], str] = str) -> None:
    """Waits until `url` answers 200; fails with `log()` (the end of the process's output)
    when the process exits first or the time runs out (it is then stopped)."""
    if wait_ready(url, timeout_s, path="", alive=lambda: process.poll() is None):
        return
    exited = process.poll()
    stop_process(process)
    why = f"exited with {exited}" if exited is not None else f"did not answer in {timeout_s:.0f} s"
    raise RuntimeError(f"{url}: the server {why}\n{log()}")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Terminates a server process, killing it when it does not end in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
