"""The GGUF tokenizer of the CPU default (SmolLM2), loaded vocabulary-only: it counts, and
llama.cpp's own log lines from that load never reach the terminal (stderr still works after)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from core.settings import CPUServerSettings
from ingest.tokenizer import load_gguf_counter
from serving.llamacpp import model_path

counter = load_gguf_counter(str(model_path(CPUServerSettings())))
print(counter.count("The lighthouse keeper trims the wick."), counter.chat_format)
print("stderr still works", file=sys.stderr)
"""


def test_loading_counts_and_prints_nothing_of_llama_cpp() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    count, fmt = done.stdout.split()
    assert int(count) > 5 and fmt == "chatml"
    assert done.stderr == "stderr still works\n"
