"""Helpers of the REST API tests: the session LLM's settings, the running app, and the check
of the error envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

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

    def client(self, timeout: float = 120, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, **kwargs)


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


def undeclared(model: Any, at: str = "") -> list[str]:
    """Paths of the fields a validated response model holds that its schema does not declare
    (extras of its open models, nested ones included)."""
    from pydantic import BaseModel

    if isinstance(model, list):
        return [p for i, m in enumerate(model) for p in undeclared(m, f"{at}[{i}]")]
    if not isinstance(model, BaseModel):
        return []
    found = [f"{at}.{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        found += undeclared(getattr(model, name), f"{at}.{name}")
    return found
