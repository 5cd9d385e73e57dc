"""The chat's logic: history, request bodies, folding a stream into a turn, citations."""

from __future__ import annotations

import pytest

from ui.client import ApiError, StreamEvent
from ui.conversation import (
    Conversation,
    Options,
    Turn,
    citation_title,
    follow,
    highlighted,
    request_body,
)

DONE = {"answer": "It was built in 1887 [1].", "invalid_citations": [4],
        "citations": [{"label": 1, "document_id": "d1", "source": "/x/lighthouse.md",
                       "title": "Lighthouse", "page": None, "text": "Intro. Built in 1887.",
                       "quote": "Built in 1887.", "quote_start": 7, "quote_end": 21,
                       "inferred": False}],
        "ledger": {"used_tokens": 10}, "usage": {"prompt_tokens": 5}, "model": "m",
        "finish_reason": "stop"}


def test_body_carries_only_what_was_chosen() -> None:
    assert request_body("q?", Options()) == {"question": "q?"}
    body = request_body("q?", Options(2048, "edges", "dense", "full", ["a", "b"]),
                        [{"role": "user", "content": "x"}])
    assert body == {"question": "q?", "history": [{"role": "user", "content": "x"}],
                    "filters": {"document_ids": ["a", "b"]}, "budget_tokens": 2048,
                    "layout": "edges", "mode": "dense", "context": "full"}


def test_history_keeps_answered_turns_only() -> None:
    ok = Turn("first?", answer="one", done=True)
    failed = Turn("second?", error="down", done=False)
    empty = Turn("third?", done=True)
    conv = Conversation([ok, failed, empty])
    assert conv.history() == [{"role": "user", "content": "first?"},
                              {"role": "assistant", "content": "one"}]
    assert conv.body("fourth?", Options())["history"] == conv.history()


def test_follow_streams_text_and_fills_the_turn() -> None:
    turn = Turn("when?")
    events = [StreamEvent("retrieval", {"ledger": {"used_tokens": 9}}),
              StreamEvent("delta", {"text": "It was "}), StreamEvent("delta", {"text": ""}),
              StreamEvent("delta", {"text": "built in 1887 [1]."}), StreamEvent("done", DONE)]
    chunks = follow(iter(events), turn)
    assert next(chunks) == "It was "
    assert turn.ledger == {"used_tokens": 9} and turn.answer == "It was "
    assert list(chunks) == ["built in 1887 [1]."]
    assert turn.ok and turn.answer == DONE["answer"] and turn.ledger == {"used_tokens": 10}
    assert turn.citations[0]["label"] == 1 and turn.invalid_citations == [4]
    assert turn.model == "m" and turn.finish_reason == "stop"


def test_stream_cut_short_is_an_error_with_what_came() -> None:
    turn = Turn("when?")
    assert list(follow(iter([StreamEvent("delta", {"text": "half "})]), turn)) == ["half "]
    assert not turn.ok and turn.answer == "half" and "stopped" in (turn.error or "")


def test_error_inside_the_stream_propagates() -> None:
    def events():
        yield StreamEvent("delta", {"text": "a"})
        raise ApiError("llm went away")

    turn = Turn("q")
    with pytest.raises(ApiError):
        list(follow(events(), turn))
    assert turn.answer == "a" and not turn.done


def test_citation_title() -> None:
    c = DONE["citations"][0]
    assert citation_title(c) == "[1] lighthouse.md"
    assert citation_title({**c, "page": 3, "inferred": True}) == "[1] lighthouse.md, p. 3 · inferred"
    assert citation_title({**c, "page": 3, "ocr": True}) == "[1] lighthouse.md, p. 3 · OCR"
    # A sheet is named, not numbered.
    assert citation_title({**c, "page": 2, "page_label": "sheet Q3"}) == "[1] lighthouse.md, sheet Q3"


def test_highlight_marks_the_quote_and_escapes() -> None:
    c = DONE["citations"][0]
    assert "Intro. <mark" in highlighted(c) and ">Built in 1887.</mark>" in highlighted(c)
    # Offsets that do not match fall back to finding the quote.
    assert ">Built in 1887.</mark>" in highlighted({**c, "quote_start": 0, "quote_end": 3})
    evil = {"text": "<script>x</script> ok", "quote": "ok", "quote_start": 19, "quote_end": 21}
    page = highlighted(evil)
    assert "<script>" not in page and "&lt;script&gt;" in page and ">ok</mark>" in page
    assert "<mark" not in highlighted({"text": "no quote", "quote": ""})
