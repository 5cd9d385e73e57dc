"""The official `openai` client, unchanged, against /v1/chat/completions and /v1/models:
sync and streaming answers, citations and ledger carried as extra fields, errors mapped to
the client's exceptions."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from api_helpers import Api

QUESTION = "How long can the lighthouse lamp run on its reserve batteries?"
RAG = {"budget_tokens": 1024}


@pytest.fixture
def oai(sample_api: Api) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=sample_api.url + "/v1", api_key="unused", max_retries=0,
                           timeout=120)
    yield client
    client.close()


def test_models_lists_the_served_model_with_its_window(oai: openai.OpenAI) -> None:
    models = oai.models.list().data
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct.Q4_1"]
    assert models[0].model_extra["context_window"] == 8192  # type: ignore[index]


@pytest.mark.slow
def test_chat_completion_sync(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(
        model="anything", extra_body=RAG,
        messages=[{"role": "system", "content": "You are a pirate."},  # ignored (documented)
                  {"role": "user", "content": QUESTION}])
    assert done.object == "chat.completion"
    assert done.model == "SmolLM2-135M-Instruct.Q4_1"
    choice = done.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert done.usage is not None and done.usage.prompt_tokens > 0
    extra = done.model_extra or {}
    assert isinstance(extra["citations"], list)
    assert [s["text"] for s in extra["sentences"]] and all(
        s["text"] in choice.message.content for s in extra["sentences"])
    assert "72 hours" in "".join(p["text"] for p in extra["ledger"]["passages"])


@pytest.mark.slow
def test_chat_completion_streaming(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="anything", stream=True, stream_options={"include_usage": True}, extra_body=RAG,
        messages=[{"role": "user", "content": "What is the lighthouse lamp?"},
                  {"role": "assistant", "content": "A lamp that turns."},
                  {"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    extra = finals[0].model_extra or {}
    assert "citations" in extra and extra["ledger"]["used_tokens"] > 0
    assert all(s["text"] in text for s in extra["sentences"]) and extra["sentences"]
    assert extra["ledger"]["search_query"] == f"What is the lighthouse lamp?\n{QUESTION}"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1


def test_a_conversation_ending_with_the_assistant_is_a_422(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        oai.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert info.value.body["param"] == "messages"  # type: ignore[index]


def test_a_prompt_over_the_window_raises_the_clients_413(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="m", stream=True, extra_body=RAG, messages=[
            {"role": "user", "content": "lantern " * 9000},
            {"role": "assistant", "content": "noted"}, {"role": "user", "content": QUESTION}])
    assert info.value.status_code == 413
    assert info.value.code == "context_length_exceeded"
