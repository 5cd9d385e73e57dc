"""`rag` starts light: loading the command line brings in none of the heavy parts that only
some commands use (the LLM client, torch, the embedding runtime, llama.cpp)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("openai", "torch", "sentence_transformers", "onnxruntime", "llama_cpp")


def test_loading_the_command_line_imports_no_heavy_package() -> None:
    code = ("import sys, app.cli\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_evaluation_is_still_reached_through_its_package() -> None:
    from app.evaluation import EvalProgress, Evaluation, without_model
    from app.evaluation.evaluate import EvalProgress as progress_of_the_run

    assert EvalProgress is progress_of_the_run
    assert callable(without_model) and Evaluation.__name__ == "Evaluation"
