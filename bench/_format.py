"""Formatting helpers of the benchmarks that need nothing but the standard library, so that a
script meant for a bare machine (bench/gpu_prefill.py: PyTorch and transformers only) can use
them without importing the project. bench/_common.py re-exports them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def parse_tokens(text: str) -> int:
    """'4k' → 4,096, '1M' → 1,048,576, '1500' → 1,500 (k = 1,024 as in '128k window')."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1
    if t.endswith("k"):
        scale, t = 1024, t[:-1]
    elif t.endswith("m"):
        scale, t = 1024 * 1024, t[:-1]
    return int(float(t) * scale)


def short_tokens(n: int) -> str:
    """1,048,576 → '1M', 131,072 → '128k', 1,500 → '1500'."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """A plain text table; `right` says which columns are right-aligned (default: all but the
    first)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = right or [i > 0 for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if right[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
