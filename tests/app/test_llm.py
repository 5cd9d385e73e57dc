"""The OpenAI-compatible client against a real llama.cpp server over HTTP: model info,
streaming, the prompt-too-long and server-down errors, and round robin over replicas."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support.ports import free_port

from app.llm import LLMClient, LLMError, LLMUnavailableError, PromptTooLongError
from core.settings import CPUServerSettings
from serving import llamacpp

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def client(llm_server: llamacpp.RunningServer) -> Iterator[LLMClient]:
    c = LLMClient([llm_server.url], retries=0)
    yield c
    c.close()


def test_model_info_names_the_served_model(client: LLMClient) -> None:
    info = client.model_info()
    assert info.id == "SmolLM2-135M-Instruct.Q4_1"
    assert info.context_window is None  # llama-cpp-python does not report max_model_len


def test_answer_streams_in_several_pieces(client: LLMClient) -> None:
    deltas = list(client.chat_stream(HELLO, max_tokens=24, temperature=0.0))
    texts = [d.text for d in deltas if d.text]
    assert len(texts) >= 3
    assert "".join(texts).strip()
    assert deltas[-1].finish_reason in ("stop", "length")


def test_a_prompt_over_the_window_is_a_clear_error_with_the_window(client: LLMClient) -> None:
    long = [{"role": "user", "content": "lantern " * 9000}]
    with pytest.raises(PromptTooLongError, match="maximum context length is 8192") as info:
        list(client.chat_stream(long, max_tokens=8))
    assert info.value.window == 8192


def test_unknown_model_name_is_refused_with_the_served_names(llm_server: llamacpp.RunningServer) -> None:
    c = LLMClient([llm_server.url], model="llama-3.1-405b")
    with pytest.raises(LLMError, match="'llama-3.1-405b' is not served .*SmolLM2-135M-Instruct"):
        c.model_info()


def test_server_down_is_a_clear_error_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    c = LLMClient([url], retries=1, connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match=f"not reachable at {url}"):
        list(c.chat_stream(HELLO, max_tokens=4))
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_round_robin_survives_a_replica_stopped_mid_test(llm_server: llamacpp.RunningServer) -> None:
    second = llamacpp.start(CPUServerSettings(port=free_port(), threads=1, n_ctx=2048))
    try:
        c = LLMClient([llm_server.url, second.url], retries=1, cooldown_s=30)
        served: list[str | None] = []
        for _ in range(4):
            text, _ = c.chat(HELLO, max_tokens=4, temperature=0.0)
            assert text.strip()
            served.append(c.last_url)
        assert sorted(served) == sorted([llm_server.url, second.url] * 2)  # they took turns
        assert served[0] != served[1] and served[1] != served[2]

        second.stop()  # one replica goes away mid-test
        for _ in range(4):
            text, _ = c.chat(HELLO, max_tokens=4, temperature=0.0)
            assert text.strip()  # every request still answered
            assert c.last_url == llm_server.url
        dead = next(r for r in c._replicas if r.url == second.url)
        assert dead.failures == 1  # found dead once, then skipped while cooling down
        assert dead.down_until > time.monotonic()
    finally:
        second.stop()
