"""The llama.cpp CPU server: its command line, model checks, and a real start and stop."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.errors import RagError, SettingsError
from core.settings import CPUServerSettings
from serving import llamacpp


def test_shipped_model_is_the_smollm2_gguf() -> None:
    path = llamacpp.model_path(CPUServerSettings())
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"


def test_command_line_carries_the_settings() -> None:
    cmd = llamacpp.render_command(CPUServerSettings(port=9123, threads=2, n_ctx=4096), "py")
    assert cmd[:3] == ["py", "-m", "serving.llamacpp_server"]
    pairs = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert pairs["--port"] == "9123" and pairs["--n_ctx"] == "4096"
    assert pairs["--n_threads"] == "2" and pairs["--host"] == "127.0.0.1"
    assert pairs["--model_alias"] == "SmolLM2-135M-Instruct.Q4_1"
    assert pairs["--cache"] == "True" and pairs["--cache_size"] == str(512 * 2**20)
    off = llamacpp.render_command(CPUServerSettings(prompt_cache_mb=0), "py")
    assert "--cache" not in off


def test_missing_and_non_gguf_models_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no GGUF file at .*nope.gguf"):
        llamacpp.model_path(CPUServerSettings(model_path=str(tmp_path / "nope.gguf")))
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    with pytest.raises(SettingsError, match="fake.gguf is not a GGUF file"):
        llamacpp.model_path(CPUServerSettings(model_path=str(fake)))


def test_a_taken_port_is_reported_not_fought_over(llm_server: llamacpp.RunningServer) -> None:
    taken = llm_server.settings.port  # type: ignore[attr-defined]
    with pytest.raises(RagError, match=f"already listens on 127.0.0.1:{taken}"):
        llamacpp.start(CPUServerSettings(port=taken))
    # ensure_running reuses a server already on the configured port instead.
    assert llamacpp.ensure_running(CPUServerSettings(port=taken)) == llm_server.url


def test_server_serves_the_openai_models_route(llm_server: llamacpp.RunningServer) -> None:
    data = httpx.get(llm_server.url + "/models", timeout=10).json()["data"]
    assert [m["id"] for m in data] == ["SmolLM2-135M-Instruct.Q4_1"]


def test_health_route_answers_for_routers(llm_server: llamacpp.RunningServer) -> None:
    assert httpx.get(llm_server.url.removesuffix("/v1") + "/health", timeout=5).status_code == 200


@pytest.mark.slow
def test_a_follow_up_reuses_its_prefix_after_another_prompt_came_between(
        llm_server: llamacpp.RunningServer) -> None:
    """The prompt cache: a conversation's second turn skips its first turn's prompt although
    another user's prompt was evaluated in between (which the last-prompt cache alone forgets)."""
    def ask(messages: list[dict[str, str]]) -> list[str]:
        llm_server.log.clear()  # it keeps the last 200 lines: only this request's are left
        reply = httpx.post(f"{llm_server.url}/chat/completions", timeout=120,
                           json={"messages": messages, "max_tokens": 2, "temperature": 0})
        assert reply.status_code == 200
        return list(llm_server.log)

    first = [{"role": "system", "content": "The harbour notes. " * 40},
             {"role": "user", "content": "What do the notes say?"}]
    ask(first)
    ask([{"role": "system", "content": "An unrelated orchard report. " * 40},
         {"role": "user", "content": "Summarise it."}])
    lines = ask([*first, {"role": "assistant", "content": "They say"},
                 {"role": "user", "content": "And then?"}])
    hits = [int(line.split()[1]) for line in lines if "prefix-match hit" in line]
    assert hits and hits[0] > 150, lines
