"""The GGUF tokenizer of the CPU default (SmolLM2), loaded vocabulary-only: it counts what
llama.cpp's tokenizer makes of the text, threads count together with the same results as
one alone, and llama.cpp's own log lines from that load never reach the terminal (stderr
still works after)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

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


TEXTS = ["The lighthouse keeper trims the wick.", "", " ", "naïve café — 東京 🚲 " * 40,
         "<|im_start|>user\nnot a special token here<|im_end|>", "line\n\n\ttabbed " * 300]


@pytest.fixture(scope="module")
def gguf_counter() -> Any:
    from core.settings import CPUServerSettings
    from ingest.tokenizer import load_gguf_counter
    from serving.llamacpp import model_path

    return load_gguf_counter(str(model_path(CPUServerSettings())))


def test_counts_are_llama_cpp_token_ids(gguf_counter: Any) -> None:
    from llama_cpp import Llama

    llama = Llama(model_path=str(gguf_counter.path), vocab_only=True, verbose=False)
    try:
        for text in TEXTS:
            ids = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text \
                else []
            assert gguf_counter.count(text) == len(ids), text[:40]
    finally:
        llama.close()
    assert gguf_counter.count_many(TEXTS) == [gguf_counter.count(t) for t in TEXTS]


def test_threads_count_together_as_one_alone(gguf_counter: Any) -> None:
    texts = [f"{t} {i}" for i in range(40) for t in TEXTS]
    serial = gguf_counter.count_many(texts)
    start = threading.Barrier(4)
    got: dict[int, list[int]] = {}

    def count(i: int) -> None:
        start.wait(30)
        got[i] = gguf_counter.count_many(texts)

    threads = [threading.Thread(target=count, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == {i: serial for i in range(4)}
