"""The `rag` command's error lines in a subprocess: settings errors (exit 2, one line naming
the variable or the YAML line), a locked or unreachable store (exits 3 and 4), no
third-party warning, and file names that cannot drive the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fixtures_docs as F
import pytest
from support.ports import free_port

from core.settings import Settings
from ingest.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def rag(*args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`rag ARGS...` of this checkout with only the RAG_* variables given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    clean.update({"PYTHONPATH": str(ROOT), "RAG_DATA_DIR": str(cwd / "data"), **env})
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], cwd=cwd,
                          env=clean, capture_output=True, text=True, timeout=120)


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    return lines[0]


# -- exit 2: settings -------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "expected"), [
    ({"RAG_STORE__URL": "ftp://qdrant:6333"},
     "error: store.url: expected an http:// or https:// URL such as http://qdrant:6333 "
     "(scheme 'ftp') (from RAG_STORE__URL)"),
    ({"RAG_STORE__URL": "not-a-url"}, "error: store.url: expected an http:// or https:// URL"),
    ({"RAG_LLM__URL": "localhost:8000"}, "error: llm.url: expected an http:// or https:// URL"),
    ({"RAG_DATA_DIR": "/etc/passwd"},
     "error: data_dir: /etc/passwd is not a folder; expected a folder"),
    ({"RAG_DATA_DIR": "/etc/passwd/data"},
     "error: data_dir: /etc/passwd is not a folder, so /etc/passwd/data cannot be made"),
    ({"RAG_EMBEDDING__DEVICE": "banana"},
     "error: embedding.device: expected cpu, cuda, cuda:N or mps, got 'banana' "
     "(from RAG_EMBEDDING__DEVICE)"),
    ({"RAG_API__KEYS": "k1"},
     "error: api.keys: RAG_API__KEYS must be a JSON list, e.g. RAG_API__KEYS='[\"a\", \"b\"]'"),
    ({"RAG_STORE__BOGUS": "1"}, "error: RAG_STORE__BOGUS: no such setting; did you mean "),
    ({"RAG_STORE__COLECTION": "x"},
     "error: RAG_STORE__COLECTION: no such setting; did you mean RAG_STORE__COLLECTION?"),
    ({"RAG_RETREIVAL__LAYOUT": "edges"},
     "error: RAG_RETREIVAL__LAYOUT: no such setting; did you mean RAG_RETRIEVAL__LAYOUT?"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else "")
def test_a_bad_variable_is_one_line_naming_it(tmp_path: Path, env: dict[str, str],
                                              expected: str) -> None:
    r = rag("documents", "list", cwd=tmp_path, **env)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr).startswith(expected)
    assert r.stdout == ""


@pytest.mark.slow  # the refusal asks torch, which takes a few seconds to import
@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this machine has an NVIDIA GPU")
def test_a_cuda_device_without_cuda_is_refused(tmp_path: Path) -> None:
    r = rag("documents", "list", cwd=tmp_path, RAG_EMBEDDING__DEVICE="cuda")
    assert r.returncode == 2
    assert one_line(r.stderr) == (
        "error: embedding.device: 'cuda': no CUDA device on this machine "
        "(torch.cuda.is_available() is false); use cpu (from RAG_EMBEDDING__DEVICE)")


@pytest.mark.parametrize(("text", "starts", "ends"), [
    ("store:\n  url: [unclosed\n", "error: config_file: rag.yaml line 3: not valid YAML", ")"),
    ("- a list\n- of things\n", "error: config_file: rag.yaml: expected a mapping of settings",
     ")"),
    ("chunking:\n  size: 64\nstore:\n  colection: x\n",
     "error: store.colection: no such setting; did you mean store.collection?",
     "(from rag.yaml line 4)"),
    ("retrieval:\n  layout: sideways\n", "error: retrieval.layout: Input should be ",
     "(from rag.yaml line 2)"),
], ids=["syntax", "not-a-mapping", "unknown-key", "bad-value"])
def test_a_bad_yaml_file_is_one_line_naming_its_line(tmp_path: Path, text: str, starts: str,
                                                     ends: str) -> None:
    (tmp_path / "rag.yaml").write_text(text)
    r = rag("documents", "list", cwd=tmp_path, RAG_CONFIG_FILE="rag.yaml")
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith(starts) and line.endswith(ends), line


def test_variables_of_the_ui_and_the_makefile_are_not_refused(tmp_path: Path) -> None:
    r = rag("documents", "list", cwd=tmp_path, RAG_UI__API_URL="http://127.0.0.1:1",
            RAG_UI__POLL_INTERVAL_S="1", RAG_UI_PORT="8502", RAG_STORE__COLLECTION="notes",
            RAG_API__KEYS='["k1"]')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "No documents in collection 'notes'."


# -- exits 3 and 4: the store ----------------------------------------------------------------

def test_an_unreachable_qdrant_exits_4_without_warnings(tmp_path: Path) -> None:
    # An API key over http makes qdrant-client warn ("insecure connection").
    env = {"RAG_STORE__URL": f"http://127.0.0.1:{free_port()}", "RAG_STORE__API_KEY": "key"}
    r = rag("documents", "list", cwd=tmp_path, **env)
    assert r.returncode == 4
    line = one_line(r.stderr)
    assert line.startswith(f"error: the Qdrant server at {env['RAG_STORE__URL']} failed: ")
    # The same run asked to show warnings does show qdrant-client's: the check above can fail.
    shown = rag("documents", "list", cwd=tmp_path, PYTHONWARNINGS="default", **env)
    assert shown.returncode == 4 and "UserWarning" in shown.stderr


def test_a_locked_store_exits_3(tmp_path: Path, make_settings: object) -> None:
    settings: Settings = make_settings(tmp_path / "data")  # type: ignore[operator]
    holder = open_store(settings)
    try:
        r = rag("documents", "list", cwd=tmp_path)
    finally:
        holder.close()
    assert r.returncode == 3
    assert "is in use by another process" in one_line(r.stderr)


def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    r = rag("--help", cwd=tmp_path, COLUMNS="120")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "2 usage or settings error" in text
    assert "3 the embedded store is in use by another process" in text
    assert "4 the Qdrant server cannot be reached" in text


# -- names that reach the terminal ------------------------------------------------------------

EVIL = "minutes\x1b[31m red\x1b[0m\u202etxt.md"
SHOWN = "minutes\\x1b[31m red\\x1b[0m\\u202etxt.md"


def test_escape_sequences_in_file_names_are_shown_not_obeyed(tmp_path: Path, settings: Settings,
                                                             ingest_paths: object) -> None:
    good = F.write_markdown(tmp_path / "docs" / EVIL)
    report = ingest_paths([good])  # type: ignore[operator]
    assert report.count("new") == 1
    listed = rag("documents", "list", cwd=tmp_path, COLUMNS="300")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "\u202e" not in listed.stdout
    assert SHOWN in listed.stdout

    bad = F.write_empty(tmp_path / "bad" / EVIL)
    failed = rag("ingest", "--quiet", bad, cwd=tmp_path)
    assert failed.returncode == 1
    assert "\x1b" not in failed.stderr + failed.stdout
    assert f"failed  {tmp_path / 'bad' / SHOWN}: empty file" in failed.stderr.splitlines()


@pytest.mark.parametrize(("env", "expected"), [
    ({"RAG_EMBEDDING__MODEL": "/nonexistent/model"},  # raised on the embedder's loading thread
     "error: embedding.model: /nonexistent/model is not a sentence-transformers model directory"),
    ({"RAG_TOKENIZER__PATH": "/nonexistent/tokenizer.json"},  # raised beside it
     "error: tokenizer.path: no tokenizer.json at /nonexistent/tokenizer.json"),
], ids=["embedder", "tokenizer"])
def test_retrieve_loading_error_is_one_line(tmp_path: Path, env: dict[str, str],
                                            expected: str) -> None:
    r = rag("retrieve", "what runs?", "--json", cwd=tmp_path, **env)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == expected
    assert r.stdout == ""


@pytest.mark.slow  # the embedder loads before the question is read
def test_a_question_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """Bytes of the command line that are no UTF-8 reach Python as lone surrogates, which
    no tokenizer takes."""
    r = rag("retrieve", os.fsdecode(b"founders \xff learn"), "--json", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == "error: question: not UTF-8 text (at character 10)"
    assert r.stdout == ""
