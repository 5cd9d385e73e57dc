"""The vLLM command line rendered from settings: the default (8B, one GPU) and the 70B
tensor-parallel preset, flag by flag, and the one-line reasons for vLLM start failures."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.settings import VLLMSettings
from serving.vllm import explain_failure, preset, render_command

ROOT = Path(__file__).resolve().parents[2]


def flags(cmd: list[str]) -> dict[str, str | None]:
    """--flag value pairs (value None for switches)."""
    out: dict[str, str | None] = {}
    i = 3
    while i < len(cmd):
        if i + 1 < len(cmd) and not cmd[i + 1].startswith("--"):
            out[cmd[i]] = cmd[i + 1]
            i += 2
        else:
            out[cmd[i]] = None
            i += 1
    return out


def test_default_command_is_llama31_8b_at_128k_with_flash_attention() -> None:
    cmd = render_command(VLLMSettings())
    assert cmd[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert flags(cmd) == {
        "--served-model-name": "llama-3.1",
        "--host": "0.0.0.0",
        "--port": "8000",
        "--max-model-len": "131072",
        "--attention-backend": "FLASH_ATTN",
        "--dtype": "auto",
        "--gpu-memory-utilization": "0.9",
        "--tensor-parallel-size": "1",
        "--max-num-batched-tokens": "8192",
        "--enable-prefix-caching": None,
        "--enable-chunked-prefill": None,
    }


def test_70b_preset_spans_four_gpus_and_keeps_the_long_context_flags() -> None:
    cmd = render_command(preset("70b", kv_cache_dtype="fp8", api_key="s3cret"))
    f = flags(cmd)
    assert cmd[2] == "meta-llama/Llama-3.1-70B-Instruct"
    assert f["--tensor-parallel-size"] == "4"
    assert f["--max-model-len"] == "131072"
    assert f["--attention-backend"] == "FLASH_ATTN"
    assert f["--kv-cache-dtype"] == "fp8"
    assert f["--api-key"] == "s3cret"
    assert "--enable-prefix-caching" in f and "--enable-chunked-prefill" in f


def test_405b_fp8_preset_uses_eight_gpus_and_fp8() -> None:
    f = flags(render_command(preset("405b-fp8")))
    assert (f["--tensor-parallel-size"], f["--quantization"], f["--kv-cache-dtype"]) == ("8", "fp8", "fp8")


def test_switches_can_be_turned_off_and_extra_args_come_last() -> None:
    cmd = render_command(VLLMSettings(enable_prefix_caching=False, enable_chunked_prefill=False,
                                      extra_args=["--seed", "7"]))
    assert "--no-enable-prefix-caching" in cmd and "--no-enable-chunked-prefill" in cmd
    assert cmd[-2:] == ["--seed", "7"]


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(SettingsError, match="8b, 70b, 405b-fp8"):
        preset("13b")


@pytest.mark.parametrize(("log", "expected"), [
    ("ValueError: The model's max seq len (131072) is larger than the maximum number of tokens "
     "that can be stored in KV cache (52000).", "KV cache cannot hold a 131,072-token context"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "ran out of memory"),
    ("RuntimeError: No CUDA GPUs are available", "no usable GPU"),
    ("something else entirely\n", "vLLM exited: something else entirely"),
])
def test_start_failures_are_explained_in_one_line(log: str, expected: str) -> None:
    message = explain_failure("INFO loading\n" + log, VLLMSettings())
    assert expected in message and "\n" not in message


def test_cli_prints_the_rendered_command() -> None:
    r = subprocess.run([sys.executable, "-m", "app.cli", "serve", "vllm", "--preset", "70b", "--print"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert shlex.split(r.stdout) == render_command(preset("70b"))
