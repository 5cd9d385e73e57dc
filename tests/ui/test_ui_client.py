"""The UI's REST client: reading the event stream and error messages (a MockTransport stands in for the
server in these unit tests; tests/ui/test_ui_live.py runs the client against the real API)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from ui.client import (
    ApiClient,
    ApiError,
    ApiUnreachableError,
    LLMUnavailableError,
    error_from_envelope,
)
from ui.settings import UISettings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SSE = {"content-type": "text/event-stream"}


def _client(handler, key: str | None = "k1") -> ApiClient:
    return ApiClient("http://api.test", key, transport=httpx.MockTransport(handler))


def test_stream_events_comments_and_multiline_data() -> None:
    lines = [": ping", "event: retrieval", 'data: {"ledger": {"used_tokens": 3}}', "",
             "event: delta", 'data: {"text": "a"}', "", "", "data: plain", "data: two", "",
             "event: done", 'data: {"answer": "a"}', "", ""]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="\n".join(lines), headers=SSE)

    with _client(handler) as api:
        events = list(api.stream_query({"question": "q"}))
    assert [(e.event, e.data) for e in events] == [
        ("retrieval", {"ledger": {"used_tokens": 3}}), ("delta", {"text": "a"}),
        ("message", {"text": "plain\ntwo"}), ("done", {"answer": "a"})]


def test_a_reply_that_is_not_a_stream_is_a_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>")

    with _client(handler) as api, pytest.raises(ApiError, match="stream of events") as info:
        list(api.stream_query({"question": "q"}))
    assert "RAG_UI__API_URL" in info.value.hint


def test_stream_query_sends_the_key_and_yields_events() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers.get("authorization")
        seen["body"] = json.loads(request.content)
        body = ('event: retrieval\ndata: {"ledger": {}}\n\n'
                'event: delta\ndata: {"text": "hi"}\n\n'
                'event: done\ndata: {"answer": "hi"}\n\n')
        return httpx.Response(200, text=body, headers=SSE)

    with _client(handler) as api:
        events = list(api.stream_query({"question": "q"}))
    assert [e.event for e in events] == ["retrieval", "delta", "done"]
    assert seen == {"auth": "Bearer k1", "body": {"question": "q", "stream": True}}


def test_error_event_raises_with_the_llm_hint() -> None:
    err = {"error": {"message": "LLM server down", "type": "service_unavailable", "param": None,
                     "code": "llm_unavailable"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=f"event: error\ndata: {json.dumps(err)}\n\n", headers=SSE)

    with _client(handler) as api, pytest.raises(LLMUnavailableError) as info:
        list(api.stream_query({"question": "q"}))
    assert "LLM server down" in info.value.message and "RAG_LLM__URL" in info.value.hint


@pytest.mark.parametrize(("status", "kind", "hint"), [
    (401, ApiError, "RAG_UI__API_KEY"), (503, LLMUnavailableError, "LLM server"),
    (404, ApiError, "reload"), (500, ApiError, "log"), (422, ApiError, "")])
def test_http_errors_become_messages(status: int, kind: type, hint: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": "nope", "type": "x",
                                                      "param": None, "code": "c"}})

    with _client(handler) as api, pytest.raises(ApiError) as info:
        api.documents()
    assert type(info.value) is kind and "nope" in info.value.message
    assert hint in info.value.hint and info.value.status == status


def test_store_trouble_is_not_blamed_on_the_llm() -> None:
    err = error_from_envelope({"error": {"message": "locked by pid 7", "code": "store_locked"}}, 503)
    assert type(err) is ApiError and "document store" in err.message and err.code == "store_locked"
    long = error_from_envelope({"error": {"message": "prompt too long",
                                          "code": "context_length_exceeded"}}, 413)
    assert "new conversation" in long.hint


def test_non_json_error_and_reply() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/config":
            return httpx.Response(200, text="<html>")
        return httpx.Response(502, text="Bad gateway")

    with _client(handler, key=None) as api:
        with pytest.raises(ApiError, match="not JSON"):
            api.config()
        with pytest.raises(ApiError, match="Bad gateway"):
            api.documents()
    assert error_from_envelope("weird", 400).message == "weird"


def test_unreachable_api_says_how_to_start_it() -> None:
    port = _closed_port()
    settings = UISettings(api_url=f"http://127.0.0.1:{port}/", connect_timeout_s=1)
    with ApiClient.from_settings(settings) as api:
        assert api.base_url == f"http://127.0.0.1:{port}"
        assert not api.ready()
        with pytest.raises(ApiUnreachableError) as info:
            api.config()
        assert "Cannot reach the RAG API" in info.value.message and "rag api" in info.value.hint
        with pytest.raises(ApiUnreachableError):
            list(api.stream_query({"question": "q"}))


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_UI__API_URL", "http://api:9000/")
    monkeypatch.setenv("RAG_UI__API_KEY", "secret")
    s = UISettings()
    assert (s.api_url, s.api_key) == ("http://api:9000", "secret")
    monkeypatch.setenv("RAG_UI__API_URL", "api:9000")
    with pytest.raises(ValueError):
        UISettings()
