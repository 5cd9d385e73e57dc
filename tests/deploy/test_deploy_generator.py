"""serving/compose.py: compose's variable syntax, the generated vllm block (--check / --write),
and the preset override files."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import COMPOSE, Tagged, compose, load_yaml, merge

from core.errors import SettingsError
from core.settings import VLLMSettings
from serving import compose as gen
from serving.vllm import PRESETS, preset, render_command


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("${A:-x}", {}, "x"),
    ("${A:-x}", {"A": ""}, "x"),
    ("${A-x}", {"A": ""}, ""),
    ("${A-x}", {}, "x"),
    ("${A:-x}", {"A": "y"}, "y"),
    ("${A}/$B", {"A": "1", "B": "2"}, "1/2"),
    ("${A}", {}, ""),
    ("$${A}", {"A": "1"}, "${A}"),
    ("a-${A:-meta-llama/Llama-3.1-8B-Instruct}", {}, "a-meta-llama/Llama-3.1-8B-Instruct"),
])
def test_interpolate(text: str, env: dict[str, str], expected: str) -> None:
    assert gen.interpolate(text, env) == expected


def test_interpolate_refuses_what_it_cannot_resolve() -> None:
    with pytest.raises(ValueError, match="A: needed"):
        gen.interpolate("${A:?needed}", {})
    with pytest.raises(ValueError, match="unsupported"):
        gen.interpolate("${A:-${B}}", {})


def test_generated_block_is_current() -> None:
    assert gen.check(COMPOSE)
    assert gen.main(["--check"]) == 0


def test_check_and_write_catch_a_hand_edit(tmp_path: Path) -> None:
    stale = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text()
    assert '"--enable-prefix-caching"' in text
    stale.write_text(text.replace('"--enable-prefix-caching"', '"--no-enable-prefix-caching"'))
    assert not gen.check(stale)
    assert gen.main(["--check", "--file", str(stale)]) == 1
    assert gen.main(["--write", "--file", str(stale)]) == 0
    assert stale.read_text() == text


def test_block_follows_render_command() -> None:
    # Any settings, not only the defaults: the block renders what render_command renders.
    cfg = VLLMSettings(enable_prefix_caching=False, kv_cache_dtype="fp8", extra_args=["--seed", "$1"])
    args = gen.compose_command(cfg)
    assert gen.resolve(args) == render_command(cfg)[2:]
    assert "$$1" in args  # a literal $ is escaped from compose's interpolation


def test_no_api_key_is_ever_written() -> None:
    with pytest.raises(SettingsError, match="VLLM_API_KEY"):
        gen.compose_command(VLLMSettings(api_key="not-for-a-file"))


def test_missing_block_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="found 0"):
        gen.replace_block("services: {}\n")
    bad = tmp_path / "c.yml"
    bad.write_text("services: {}\n")
    assert gen.main(["--check", "--file", str(bad)]) == 2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_override(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--preset", name]) == 0
    override = load_yaml(capsys.readouterr().out)
    cfg = preset(name)
    vllm = override["services"]["vllm"]
    assert vllm["command"] == render_command(cfg)[2:]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert isinstance(devices, Tagged) and devices.tag == "!override"
    merged = merge(load_yaml(COMPOSE), override)
    reserved = merged["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert reserved == [{"driver": "nvidia", "count": cfg.tensor_parallel_size, "capabilities": ["gpu"]}]
    if name == "405b-fp8":
        cmd = vllm["command"]
        assert cmd[cmd.index("--quantization") + 1] == "fp8"
        assert cmd[cmd.index("--kv-cache-dtype") + 1] == "fp8"


def test_seventy_b_needs_only_env_lines() -> None:
    env = {"RAG_VLLM__MODEL": PRESETS["70b"]["model"], "RAG_VLLM__TENSOR_PARALLEL_SIZE": "4"}
    vllm = compose(COMPOSE, env=env)["services"]["vllm"]
    assert vllm["command"] == render_command(preset("70b"))[2:]
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "4"
