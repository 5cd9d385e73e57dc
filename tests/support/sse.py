"""Reading server-sent events in tests (httpx-sse), with a check of the framing."""

from __future__ import annotations

import httpx
from httpx_sse import EventSource


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) of every event of a read `response`, after checking the API's framing:
    each event one `event:` line and one `data:` line, ended by a blank line."""
    text = response.text
    assert text.endswith("\n\n"), text[-200:]
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
    return [(e.event, e.data) for e in EventSource(response).iter_sse()]
