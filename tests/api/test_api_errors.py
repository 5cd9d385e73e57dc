"""Every limit and every malformed input gives the one error envelope and a 4xx; no
traceback ever reaches the client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_helpers import assert_envelope

Q = "How long can the lighthouse lamp run on its reserve batteries?"


def test_a_body_over_the_limit_is_a_413_by_content_length(client: httpx.Client) -> None:
    body = json.dumps({"question": Q, "history": [{"role": "user", "content": "x" * 150_000}] * 8})
    assert len(body) > 2**20
    r = client.post("/v1/query", content=body, headers={"content-type": "application/json"})
    assert_envelope(r, 413, code="body_too_large")


def test_a_chunked_body_over_the_limit_is_a_413_too(client: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"question": "q", "history": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 32_768
        yield b'"}]}'

    r = client.post("/v1/retrieve", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_envelope(r, 413, code="body_too_large")


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"question": "x" * 2001}, 422, "question"),  # api.max_question_chars 2000
    ({"question": "x" * 9000}, 422, "question"),  # the schema's own bound
    ({"question": Q, "budget_tokens": 100}, 422, "budget_tokens"),  # under 512
    ({"question": Q, "budget_tokens": 10**7}, 422, "budget_tokens"),  # over 16,384
    ({"question": ""}, 422, "question"),
    ({"question": " \n\t "}, 422, "question"),
    ({"question": 5}, 422, "question"),
    ({}, 422, "question"),
    ({"question": Q, "colour": "blue"}, 422, "colour"),
    ({"question": Q, "layout": "spiral"}, 422, "layout"),
    ({"question": Q, "mode": "psychic"}, 422, "mode"),
    ({"question": Q, "context": "some"}, 422, "context"),
    ({"question": Q, "history": [{"role": "system", "content": "x"}]}, 422, "history.0.role"),
    ({"question": Q, "history": "not a list"}, 422, "history"),
    ({"question": Q, "filters": {"types": "pdf"}}, 422, "filters.types"),
    ({"question": Q, "filters": {"colour": "x"}}, 422, "filters.colour"),
    ({"question": "\ud800 lone surrogate"}, 422, "question"),
])
@pytest.mark.parametrize("route", ["/v1/query", "/v1/retrieve"])
def test_invalid_requests_are_422_envelopes_naming_the_field(
        client: httpx.Client, route: str, body: dict[str, Any], status: int, param: str) -> None:
    raw = json.dumps(body)  # ensure_ascii keeps a lone surrogate as its \ud800 escape
    r = client.post(route, content=raw, headers={"content-type": "application/json"})
    err = assert_envelope(r, status, param=param)
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize(("raw", "status"), [
    (b"{not json", 422), (b"", 422), (b"[1, 2]", 422), (b"null", 422),
    (b"\xff\xfe\x00", 400),  # not even text: FastAPI cannot decode it
])
def test_malformed_json_is_an_envelope(client: httpx.Client, raw: bytes, status: int) -> None:
    r = client.post("/v1/retrieve", content=raw, headers={"content-type": "application/json"})
    assert_envelope(r, status)


def test_chat_completion_input_errors(client: httpx.Client) -> None:
    assert_envelope(client.post("/v1/chat/completions", json={"messages": []}), 422,
                    param="messages")
    assert_envelope(client.post("/v1/chat/completions", json={"model": "m"}), 422,
                    param="messages")
    only_system = {"messages": [{"role": "system", "content": "be brief"}]}
    assert_envelope(client.post("/v1/chat/completions", json=only_system), 422, param="messages")
    blank = {"messages": [{"role": "user", "content": "   "}]}
    assert_envelope(client.post("/v1/chat/completions", json=blank), 422, param="messages")
    wrong_role = {"messages": [{"role": "wizard", "content": "hi"}]}
    assert_envelope(client.post("/v1/chat/completions", json=wrong_role), 422)
    two = {"messages": [{"role": "user", "content": "hi"}], "n": 2}
    assert_envelope(client.post("/v1/chat/completions", json=two), 422, param="n")
    budget = {"messages": [{"role": "user", "content": "hi"}], "budget_tokens": 1}
    assert_envelope(client.post("/v1/chat/completions", json=budget), 422, param="budget_tokens")


def test_unknown_routes_and_methods_are_envelopes(client: httpx.Client) -> None:
    assert_envelope(client.get("/v1/nothing-here"), 404, code="not_found")
    assert_envelope(client.get("/v1/query"), 405, code="method_not_allowed")
    assert_envelope(client.delete("/v1/documents/0000000000000000"), 404)


def _raw_reply(url: str, request: bytes) -> bytes:
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("lengths", [b"Content-Length: 10\r\nContent-Length: 20\r\n",
                                     b"Content-Length: abc\r\n", b"Content-Length: -5\r\n"])
def test_invalid_content_length_is_a_400_envelope(sample_api: Any, lengths: bytes) -> None:
    reply = _raw_reply(sample_api.url, b"POST /v1/retrieve HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\n" + lengths
                       + b"Connection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower()
    err = json.loads(body)["error"]
    assert err["code"] == "invalid_http" and "Content-Length" in err["message"]


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"question": "caf\xe9 au lait"}', "not UTF-8 (byte 0xe9 at position 17)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_undecodable_json_says_why(client: httpx.Client, raw: bytes, words: str) -> None:
    r = client.post("/v1/retrieve", content=raw, headers={"content-type": "application/json"})
    err = assert_envelope(r, 400, code="bad_request")
    assert words in err["message"] and "There was an error" not in err["message"]
