"""bench/gpu_prefill.py works before a GPU is ever lent: the tiny shape on this CPU, and the
8B shape's arithmetic checked against the model transformers builds from the same config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_prefill.py"


@pytest.fixture(scope="module")
def gpu_prefill():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_prefill as module
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_the_8b_shape_matches_the_model_transformers_builds(gpu_prefill):
    import torch

    shape = gpu_prefill.Shape.of(gpu_prefill.LLAMA31_8B)
    model = gpu_prefill.build_model(gpu_prefill.LLAMA31_8B, "meta", torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) == shape.parameters() == 8_030_261_248
    # GQA: 32 layers x (K + V) x 8 heads x 128 dims x 2 bytes = 128 KiB per token.
    assert shape.kv_bytes_per_token() == 128 * 1024
    # At 128k tokens attention is a large share of the work: check the split, not just a total.
    dense = 2.0 * 32 * shape.layer_matmul_params() * 131072
    assert shape.prefill_flops(131072) - dense == pytest.approx(2.0 * 32 * 131072**2 * 4096, rel=1e-3)


@pytest.mark.slow
def test_tiny_run_prints_the_table_and_measures_the_cache(tmp_path):
    out = tmp_path / "gpu_prefill.json"
    # The GPU machine has PyTorch and transformers, not this project: none of ours may be imported.
    bare = ("import runpy, sys\n"
            "for name in ('core', 'app', 'ingest', 'retrieval', 'serving', 'ui'):\n"
            "    sys.modules[name] = None\n"
            "sys.argv = ['gpu_prefill.py', '--tiny', '--sizes', '256,512', '--chunk', '256',"
            f" '--out', {str(out)!r}]\n"
            f"sys.path.insert(0, {str(SCRIPT.parent)!r})\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", bare], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "tokens/s" in done.stdout and "KV per token" in done.stdout
    result = json.loads(out.read_text())
    assert [r["tokens"] for r in result["rows"]] == [256, 512]
    for row in result["rows"]:
        assert row["kv_bytes_per_token"] == row["kv_expected"] == 2 * 2 * 2 * 16 * 4
        assert row["seconds"] > 0
    assert result["parameters"] == result["parameters_expected"]
