"""The one writer of server-sent events (POST /v1/query and /v1/chat/completions)."""

from __future__ import annotations

import json

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = "[DONE]"  # OpenAI's end of stream


def sse(data: object, event: str | None = None) -> str:
    """One event: `data` as JSON (a str as it is), named by `event` when given."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
