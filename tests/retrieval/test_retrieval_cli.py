"""`rag retrieve` as a user runs it: a subprocess on a data directory of its own."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from retrieval_helpers import library_text

RAG = Path(sys.executable).parent / "rag"
QUESTION = "How does the lighthouse keeper test the reserve batteries?"


def rag(data_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return subprocess.run([str(RAG), "--data-dir", str(data_dir), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_json_object(stdout: str) -> dict:
    text = stdout.strip()
    assert text.startswith("{") and text.endswith("}")
    d = json.loads(text)  # fails on anything printed around the object
    assert isinstance(d, dict)
    return d


@pytest.mark.slow
def test_retrieve_json_after_ingest(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    rng = random.Random(3)
    seen: set[str] = set()
    (docs / "lighthouse.md").write_text(library_text("lighthouse.md", "lighthouse", rng, seen))
    (docs / "bread.txt").write_text(library_text("bread.txt", "bread", rng, seen))
    data = tmp_path / "data"

    empty = rag(data, "retrieve", QUESTION, "--json", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    d = one_json_object(empty.stdout)
    assert d["passages"] == [] and d["used_tokens"] == 0
    assert "empty" in d["message"]

    done = rag(data, "ingest", str(docs), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    res = rag(data, "retrieve", QUESTION, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    d = one_json_object(res.stdout)
    assert {"budget", "used_tokens", "passages", "left_out"} <= d.keys()
    assert d["mode"] == "full"  # two small documents fit the default budget
    assert sorted(Path(p["source"]).name for p in d["passages"]) == ["bread.txt",
                                                                     "lighthouse.md"]
    assert 0 < d["used_tokens"] == sum(p["tokens"] for p in d["passages"])
    assert d["used_tokens"] <= d["budget"]["available"]
    assert d["budget"]["requested"] == 131072

    res = rag(data, "retrieve", QUESTION, "--json", "--context", "retrieve", "--budget", "1800",
              "--layout", "relevance", "--mode", "keyword", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    d = one_json_object(res.stdout)
    assert (d["mode"], d["layout"], d["search_mode"]) == ("retrieve", "relevance", "keyword")
    assert d["budget"]["requested"] == 1800
    assert 0 < d["used_tokens"] <= d["budget"]["available"]
    assert Path(d["passages"][0]["source"]).name == "lighthouse.md"
    scores = [p["score"] for p in d["passages"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("option", "value"), [("--layout", "sideways"), ("--mode", "fuzzy"),
                                               ("--context", "most")])
def test_bad_choice_exits_2_with_one_line(tmp_path, option, value):
    res = rag(tmp_path / "data", "retrieve", QUESTION, option, value, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert option in lines[0] and value in lines[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists()  # refused before touching the store


def test_bad_filter_exits_2(tmp_path):
    res = rag(tmp_path / "data", "retrieve", QUESTION, "--filter", "colour=blue", cwd=tmp_path)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert "--filter" in res.stderr
