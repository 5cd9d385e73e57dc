"""vllm-router (the PyPI wheel) in front of two real llama.cpp servers: the turns of one
conversation stay on one replica, and a stopped replica is routed around without a failed
request. Which replica answered is read from each server's own access log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.llm import LLMClient
from core.errors import RagError
from core.settings import CPUServerSettings
from serving import llamacpp, router
from tests.support.ports import free_port


def test_command_names_workers_policy_and_health_route() -> None:
    cmd = router.render_command(["http://a:8000/v1", "http://b:8000/"], port=8000, host="0.0.0.0")
    workers = cmd[cmd.index("--worker-urls") + 1:cmd.index("--policy")]
    assert workers == ["http://a:8000", "http://b:8000"]  # servers' roots: it appends /v1 itself
    assert cmd[cmd.index("--policy") + 1] == "cache_aware"
    assert cmd[cmd.index("--health-check-endpoint") + 1] == "/health"
    with pytest.raises(RagError, match="not one of"):
        router.render_command(["http://a:8000"], port=8000, policy="fastest")
    with pytest.raises(RagError, match="no worker"):
        router.render_command([], port=8000)


def _answered(servers: list[llamacpp.RunningServer]) -> list[int]:
    """Chat requests each server logged since the last call (its log keeps 200 lines: cleared)."""
    counts = [sum("POST /v1/chat/completions HTTP" in line for line in s.log) for s in servers]
    for s in servers:
        s.log.clear()
    return counts


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[llamacpp.RunningServer]]:
    servers = [llamacpp.start(CPUServerSettings(port=free_port(), threads=1, n_ctx=2048)) for _ in range(2)]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.mark.slow
def test_conversations_stay_on_one_replica_and_a_stopped_one_is_routed_around(
        replicas: list[llamacpp.RunningServer]) -> None:
    front = router.start([s.url for s in replicas], port=free_port(), metrics_port=free_port())
    client = LLMClient([front.url], retries=2)
    try:
        for topic in ("the harbour", "the orchard"):
            messages = [{"role": "system", "content": f"Notes about {topic}. " * 12}]
            where = []
            for turn in range(3):
                _answered(replicas)
                messages.append({"role": "user", "content": f"Question {turn} about {topic}?"})
                text, _ = client.chat(messages, max_tokens=2, temperature=0.0)
                messages.append({"role": "assistant", "content": text})
                answered = _answered(replicas)
                assert sorted(answered) == [0, 1], answered
                where.append(answered.index(1))
            assert len(set(where)) == 1, f"one conversation's turns went to replicas {where}"

        busy = where[0]
        replicas[busy].stop()  # the replica holding the conversation goes away
        other = replicas[1 - busy]
        for _ in range(2):
            _answered([other])
            text, _ = client.chat(messages, max_tokens=2, temperature=0.0)
            assert text.strip()
            assert _answered([other]) == [1]
    finally:
        client.close()
        front.stop()
