"""Readiness checks of OpenAI-compatible servers."""

from __future__ import annotations

import time

import httpx


def is_ready(base_url: str, api_key: str | None = None, path: str = "/v1/models",
             timeout_s: float = 2.0) -> bool:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(base_url.rstrip("/") + path, headers=headers, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_ready(base_url: str, timeout_s: float, api_key: str | None = None,
               path: str = "/v1/models", alive: object = None) -> bool:
    """Polls until ready or `timeout_s`; stops early when `alive()` turns False."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            return False
        if is_ready(base_url, api_key, path):
            return True
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    return False
