"""Readiness of HTTP servers: one check and one poll, for the LLM servers we start, the
API's /readyz, and the servers tests and benchmarks start."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def is_ready(base_url: str, api_key: str | None = None, path: str = "/v1/models",
             timeout_s: float = 2.0, client: httpx.Client | None = None) -> bool:
    """True when GET base_url + path answers 200. A caller that checks again and again passes
    a kept `client`: a new one per call builds an SSL context, ~50 ms of CPU
    (bench/README.md, "api_load.py: where the API's CPU goes")."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    get = client.get if client is not None else httpx.get
    try:
        response = get(base_url.rstrip("/") + path, headers=headers, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_ready(base_url: str, timeout_s: float, *, api_key: str | None = None,
               path: str = "/v1/models", alive: Callable[[], bool] | None = None) -> bool:
    """Polls `is_ready` until it holds or `timeout_s` passes; stops early (False) when
    `alive()` turns False, e.g. the server's process exited."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05  # short at first (a thread-started server is up in milliseconds), then 0.5 s
    while True:
        if alive is not None and not alive():
            return False
        if is_ready(base_url, api_key, path):
            return True
        if time.monotonic() + delay > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
