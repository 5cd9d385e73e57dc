"""docs/deploy.md states sizes that follow from the models' shapes, and names what exists."""

from __future__ import annotations

import re

import pytest
from deploy_helpers import CLUSTER, COMPOSE, ROOT, compose, settings_field

DOC = (ROOT / "docs" / "deploy.md").read_text()
KIB, GIB = 1024, 1024**3
WINDOW = 131_072

# (name in the doc, layers, KV heads, head dim, bytes per value): Llama 3.1 configs.
MODELS = [("Llama-3.1-8B", 32, 8, 128, 2), ("Llama-3.1-70B", 80, 8, 128, 2),
          ("Llama-3.1-405B-FP8", 126, 8, 128, 1)]


def _fmt(x: float) -> str:
    return f"{x:g}"


@pytest.mark.parametrize(("name", "layers", "heads", "dim", "width"), MODELS)
def test_kv_cache_sizes(name: str, layers: int, heads: int, dim: int, width: int) -> None:
    per_token = layers * heads * dim * 2 * width
    row = next(line for line in DOC.splitlines() if line.startswith(f"| {name}"))
    assert f"{layers} × {heads} × {dim} × 2 × {width} B = {_fmt(per_token / KIB)} KiB" in row
    assert f"| {_fmt(per_token * WINDOW / GIB)} GiB |" in row


def test_eight_b_fits_three_full_sequences_on_one_gpu() -> None:
    usable = 81_559 / 1024 * 0.90  # GiB vLLM takes of an H100 80 GB at the default utilisation
    weights = 8.03e9 * 2 / GIB
    kv = usable - weights - 4
    assert int(kv // 16) == 3
    assert "3 full 128k sequences" in DOC


def test_named_files_and_profiles_exist() -> None:
    model = compose(COMPOSE)
    profiles = {p for s in model["services"].values() for p in s.get("profiles", [])}
    for profile in re.findall(r"^\| `(\w+)`", DOC, re.MULTILINE):
        assert profile in profiles, profile
    assert CLUSTER.name in DOC and "python -m serving.compose --write" in DOC
    env_example = (ROOT / ".env.example").read_text()
    for var in set(re.findall(r"\b(RAG_[A-Z_]+|VLLM_2_GPU|GGUF_DIR|DOCS_DIR)\b", DOC)):
        assert settings_field(var) is not None or var in env_example, var
