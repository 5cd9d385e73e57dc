"""POST /v1/retrieve and /v1/query over real HTTP: the packed context, the JSON answer, the
server-sent event framing, history passed through, and errors before and after the stream
started."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_helpers import Api, assert_envelope, undeclared
from support.sse import sse_events

from app.api.schemas import AnswerOut, RetrieveResponse

QUESTION = "How long can the lighthouse lamp run on its reserve batteries?"
SMALL = {"budget_tokens": 1024}


def test_retrieve_packs_the_passage_with_its_ledger(client: httpx.Client) -> None:
    r = client.post("/v1/retrieve", json={"question": QUESTION, **SMALL})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["budget"]["requested"] == 1024
    assert body["budget"]["context_window"] == 8192
    assert 0 < body["used_tokens"] <= body["budget"]["available"]
    assert "72 hours" in body["context"]
    sources = [p["source"] for p in body["passages"]]
    assert any(s.endswith("lighthouse-maintenance.md") for s in sources)
    assert {"left_out", "mode", "layout", "search_mode", "documents", "message"} <= set(body)


def test_the_ledger_returned_is_the_ledger_declared(client: httpx.Client) -> None:
    """Every field /v1/retrieve returns is in its schema (so in the OpenAPI document that
    clients generate from), the notes included."""
    r = client.post("/v1/retrieve", json={"question": QUESTION, "budget_tokens": 1024,
                                           "context": "retrieve"})
    body = r.json()
    assert undeclared(RetrieveResponse.model_validate(body)) == []
    assert body["notes"]  # the budget narrows the neighbours, and says so
    doc = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"notes", "tokenizer", "seconds", "documents"} <= set(doc["RetrieveResponse"]["properties"])
    assert {"search_query", "reused_context"} <= set(doc["AnswerLedger"]["properties"])
    assert {"chunks"} <= set(doc["PassageOut"]["properties"])


def test_retrieve_options_and_filters_reach_the_packer(client: httpx.Client) -> None:
    r = client.post("/v1/retrieve", json={
        "question": QUESTION, "budget_tokens": 1024, "layout": "relevance", "mode": "keyword",
        "context": "retrieve", "filters": {"types": ["text"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["layout"] == "relevance" and body["search_mode"] == "keyword"
    assert body["mode"] == "retrieve"
    assert all(p["source"].endswith(".txt") for p in body["passages"])
    assert any(x["reason"] == "filter" for x in body["left_out"])


def test_retrieve_is_deterministic(client: httpx.Client) -> None:
    a = client.post("/v1/retrieve", json={"question": QUESTION, **SMALL}).json()
    b = client.post("/v1/retrieve", json={"question": QUESTION, **SMALL}).json()
    assert a["context"] == b["context"]


@pytest.mark.slow
def test_query_answers_with_citations_and_ledger(client: httpx.Client) -> None:
    r = client.post("/v1/query", json={"question": QUESTION, **SMALL})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"answer", "citations", "invalid_citations", "ledger", "usage", "model",
                         "finish_reason"}
    assert body["answer"].strip()
    assert body["ledger"]["used_tokens"] > 0
    assert body["usage"]["prompt_tokens"] > body["ledger"]["used_tokens"]
    for c in body["citations"]:
        assert c["text"][c["quote_start"]:c["quote_end"]] == c["quote"]
    assert_checked_sentences(body)
    assert undeclared(AnswerOut.model_validate(body)) == []

    # A follow-up with the history: the search text carries the previous question.
    follow = client.post("/v1/query", json={
        "question": "And the generator?", **SMALL,
        "history": [{"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": body["answer"],
                     "citations": body["citations"]}]})  # extra fields of a turn are ignored
    assert follow.status_code == 200, follow.text
    ledger = follow.json()["ledger"]
    assert ledger["search_query"] == f"{QUESTION}\nAnd the generator?"
    assert isinstance(ledger["reused_context"], bool)


@pytest.mark.slow
def test_query_stream_is_framed_as_server_sent_events(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/query", json={"question": QUESTION, "stream": True,
                                                  **SMALL}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        r.read()
    events = sse_events(r)
    kinds = [e for e, _ in events]
    assert kinds[0] == "retrieval" and kinds[-1] == "done", kinds
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) >= 3, kinds
    ledger = json.loads(events[0][1])["ledger"]
    assert "72 hours" in "".join(p["text"] for p in ledger["passages"])
    done = json.loads(events[-1][1])
    streamed = "".join(json.loads(d)["text"] for e, d in events if e == "delta")
    assert streamed.strip() == done["answer"]
    assert done["ledger"]["used_tokens"] == ledger["used_tokens"]
    assert {"citations", "usage", "model"} <= set(done)
    assert_checked_sentences(done)


def assert_checked_sentences(body: dict[str, Any]) -> None:
    """Each sentence of the answer, in order, with a verdict its citations agree with."""
    sentences = body["sentences"]
    assert sentences, body["answer"]
    labels = {p["label"]: p for p in body["ledger"]["passages"]}
    for s in sentences:
        assert body["answer"][s["start"]:s["end"]] == s["text"]
        assert s["support"] in ("supported", "unsupported", "uncited")
        assert set(s["citations"]) <= set(labels)
        if s["support"] == "supported":
            assert s["evidence"]["label"] in s["citations"]
            assert s["evidence"]["quote"] in labels[s["evidence"]["label"]]["text"]
        else:
            assert s["evidence"] is None
        assert (s["support"] == "uncited") == (not s["citations"])
    assert [s["start"] for s in sentences] == sorted(s["start"] for s in sentences)


HUGE_HISTORY = [{"role": "user", "content": "lantern " * 9000},
                {"role": "assistant", "content": "noted"}]


def _history_past_the_window_only_with_its_template() -> list[dict[str, str]]:
    """200 turns whose text alone passes the early check (question and history within the
    window less the answer reserve), while the chat template's tokens around each turn push
    the whole prompt past the 8k window: a failure that only the prompt count finds."""
    from core.settings import CPUServerSettings
    from ingest.tokenizer import load_gguf_counter
    from serving.llamacpp import model_path

    counter = load_gguf_counter(str(model_path(CPUServerSettings())))
    per_word = counter.count("lantern " * 100) / 100
    words = int(7600 / 200 / per_word)
    return [{"role": ("user", "assistant")[i % 2], "content": "lantern " * words} for i in range(200)]


def test_an_error_after_the_stream_started_is_an_error_event(client: httpx.Client) -> None:
    r = client.post("/v1/query", json={"question": QUESTION, "stream": True, **SMALL,
                                       "history": _history_past_the_window_only_with_its_template()})
    assert r.status_code == 200
    events = sse_events(r)
    assert [e for e, _ in events] == ["retrieval", "error"]
    err = json.loads(events[1][1])["error"]
    assert err["code"] == "context_length_exceeded" and "8,192" in err["message"]


def test_a_conversation_too_long_by_itself_is_refused_before_the_stream(client: httpx.Client) -> None:
    r = client.post("/v1/query", json={"question": QUESTION, "history": HUGE_HISTORY,
                                       "stream": True, **SMALL})
    assert_envelope(r, 413, code="context_length_exceeded")


def test_the_same_error_without_streaming_is_a_413_envelope(client: httpx.Client) -> None:
    r = client.post("/v1/query", json={"question": QUESTION, "history": HUGE_HISTORY, **SMALL})
    assert_envelope(r, 413, code="context_length_exceeded")


def test_errors_before_the_stream_are_plain_json(client: httpx.Client) -> None:
    r = client.post("/v1/query", json={"question": "   ", "stream": True})
    assert_envelope(r, 422, param="question")


def test_config_gives_the_ui_its_window_defaults_and_limits(sample_api: Api,
                                                            client: httpx.Client) -> None:
    body = client.get("/v1/config").json()
    assert body["context_window"] == 8192
    assert body["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert body["defaults"] == {"budget_tokens": 16384, "layout": "document", "mode": "hybrid",
                                "context": "auto"}
    assert body["choices"] == {"layout": ["document", "relevance", "edges"],
                               "mode": ["hybrid", "dense", "keyword"],
                               "context": ["auto", "full", "retrieve"]}
    limits = body["limits"]
    assert limits["min_budget_tokens"] == 512 and limits["max_budget_tokens"] == 16384
    assert limits["max_question_chars"] == 2000 and limits["max_files_per_upload"] == 3
    assert ".pdf" in limits["upload_types"] and ".md" in limits["upload_types"]
    assert body["auth"] is False
