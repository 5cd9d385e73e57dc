"""Helpers of the REST API tests: run an app with uvicorn on a free loopback port, and
check the error envelope and the server-sent event framing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from ports import free_port  # noqa: F401  (re-exported for the API tests)

from core.settings import Settings


def llm_overrides(llm_server: Any, url: str | None = None) -> dict[str, Any]:
    """The session's llama.cpp server, counted with its own GGUF tokenizer and window."""
    from serving.llamacpp import model_path

    return {"url": url or llm_server.url, "context_window": llm_server.settings.n_ctx,
            "tokenizer": str(model_path(llm_server.settings)), "retries": 0,
            "timeout_s": 120, "temperature": 0.0}


@dataclass
class Api:
    url: str  # http://127.0.0.1:PORT
    settings: Settings
    service: Any
    app: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Runs `app` with uvicorn on a background thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def wait_warm(app: Any, timeout_s: float = 60) -> None:
    if not app.state.api.warm.wait(timeout_s):
        raise RuntimeError("the API did not warm up")


def assert_envelope(response: httpx.Response, status: int, code: str | None = None,
                    param: str | None = None) -> dict[str, Any]:
    """The response is the one error envelope, with this status (and code, param)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["message"] and isinstance(err["message"], str)
    assert "Traceback" not in err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err  # type: ignore[no-any-return]


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event, data) of every server-sent event, checking the framing on the way."""
    events = []
    assert text.endswith("\n\n"), text[-200:]
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][7:], lines[1][6:]))
    return events
