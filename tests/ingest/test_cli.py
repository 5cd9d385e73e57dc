"""The `rag` command in a subprocess: exit codes, one-line errors, documents list/delete, and
the embedded store refusing a second process. None of these runs loads the embedder (an
all-unchanged or all-failed ingest never does), so each takes about a second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from ingest_helpers import rag

from core.settings import Settings
from ingest.pipeline import document_id_for
from ingest.store import Where, open_store


def one_line(stderr: str) -> str:
    """The single line a failing command prints, asserting it is single and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    return lines[0]


class Corpus:
    def __init__(self, root: Path, settings: Settings, files: dict[str, Path]):
        self.root, self.settings, self.files = root, settings, files
        self.data_dir = settings.data_dir


def build_corpus(root: Path, settings: Settings, embedder: Any) -> Corpus:
    """The good corpus in root/docs (plus one unsupported file), ingested in-process."""
    from ingest.pipeline import ingest

    files = F.write_good_corpus(root / "docs")
    F.write_unsupported(root / "docs" / "notes.xyz")
    report = ingest(settings, [root / "docs"], embedder=embedder)
    assert report.count("new") == len(files) and not report.failed
    return Corpus(root, settings, files)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, make_settings: Any,
           embedder: Any) -> Corpus:
    """One ingested corpus for the tests that only read it."""
    root = tmp_path_factory.mktemp("cli-corpus")
    return build_corpus(root, make_settings(root / "data"), embedder)


@pytest.fixture
def ingested(tmp_path: Path, settings: Settings, embedder: Any) -> Corpus:
    """A corpus of this test's own, for the tests that change it."""
    return build_corpus(tmp_path, settings, embedder)


# -- exit code 2: usage and settings ----------------------------------------------------------

@pytest.mark.parametrize(("env", "field"), [
    ({"RAG_CHUNKING__SIZE": "abc"}, "chunking.size"),
    ({"RAG_CHUNKING__SIZE": "8"}, "chunking.size"),
    ({"RAG_CHUNKING__SIZE": "64", "RAG_CHUNKING__OVERLAP": "64"}, "chunking.overlap"),
    ({"RAG_EMBEDDING__BATCH_SIZE": "0"}, "embedding.batch_size"),
    ({"RAG_STORE__COLLECTION": "no spaces allowed"}, "store.collection"),
    ({"RAG_RETRIEVAL__SEARCH_MODE": "fuzzy"}, "retrieval.search_mode"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else v)
def test_bad_setting_exits_2_naming_the_field(tmp_path: Path, env: dict[str, str],
                                              field: str) -> None:
    args = ["ingest", str(tmp_path)] if "CHUNKING" in str(env) else ["documents", "list"]
    r = rag(*args, data_dir=tmp_path / "data", cwd=tmp_path, env=env)
    assert r.returncode == 2, (args, r.stderr)
    line = one_line(r.stderr)
    assert line.startswith(f"error: {field.split('.')[0]}")  # the message starts with it
    assert field in line
    assert r.stdout == ""


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    r = rag("--config", tmp_path / "nope.yaml", "documents", "list", data_dir=tmp_path,
            cwd=tmp_path)
    assert r.returncode == 2
    assert "config_file" in one_line(r.stderr) and "nope.yaml" in r.stderr


def test_bad_collection_option_exits_2(tmp_path: Path) -> None:
    r = rag("ingest", "--collection", "bad/name", tmp_path, data_dir=tmp_path / "d", cwd=tmp_path)
    assert r.returncode == 2
    assert one_line(r.stderr).startswith("error: --collection:")


@pytest.mark.parametrize("args", [
    ["ingest", "--bogus", "x"],
    ["ingest"],
    ["documents", "delete"],
    ["documents", "frobnicate"],
    ["no-such-command"],
])
def test_usage_error_exits_2(tmp_path: Path, args: list[str]) -> None:
    r = rag(*args, data_dir=tmp_path, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "Usage:" in r.stderr or "Error" in r.stderr


# -- exit codes 1 and 0 of `rag ingest` -------------------------------------------------------

def test_ingest_of_failing_files_exits_1_listing_each(tmp_path: Path) -> None:
    bad = F.write_garbage_pdf(tmp_path / "in" / "garbage.pdf")
    empty = F.write_empty(tmp_path / "in" / "empty.md")
    missing = tmp_path / "in" / "missing.txt"
    r = rag("ingest", bad, empty, missing, data_dir=tmp_path / "data", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    for path, reason in ((bad, "corrupt PDF"), (empty, "empty file"),
                         (missing, "no such file or directory")):
        assert any(line.startswith(f"failed  {path}: ") and reason in line for line in lines), \
            (path, r.stderr)
    assert "failed 3" in r.stdout
    assert "Nothing was embedded." in r.stdout


def test_ingest_unchanged_folder_exits_0(shared: Corpus) -> None:
    docs = shared.root / "docs"
    r = rag("ingest", docs, data_dir=shared.data_dir, cwd=shared.root, settings=shared.settings)
    assert r.returncode == 0, r.stderr
    assert f"unchanged {len(shared.files)}" in r.stdout and "skipped 1" in r.stdout
    assert "Nothing was embedded: every file is unchanged." in r.stdout
    assert one_line(r.stderr) == f"skipped {docs / 'notes.xyz'}: unsupported file type '.xyz'"


def test_ingest_partial_failure_exits_1_and_keeps_others(ingested: Corpus) -> None:
    F.write_binary_txt(ingested.files["bakery.txt"])
    r = rag("ingest", ingested.root / "docs", data_dir=ingested.data_dir, cwd=ingested.root,
            settings=ingested.settings)
    assert r.returncode == 1
    assert f"failed  {ingested.files['bakery.txt']}: binary content in a text file" in r.stderr
    assert f"unchanged {len(ingested.files) - 1}" in r.stdout
    listed = rag("documents", "list", "--json", data_dir=ingested.data_dir, cwd=ingested.root)
    assert len(json.loads(listed.stdout)) == len(ingested.files)


# -- documents list / delete ------------------------------------------------------------------

def test_documents_list_json(shared: Corpus) -> None:
    r = rag("documents", "list", "--json", data_dir=shared.data_dir, cwd=shared.root)
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    assert {Path(d["source"]).name: d["type"] for d in docs} == F.GOOD_TYPES
    for d in docs:
        assert set(d) == {"document_id", "source", "title", "type", "pages", "chunks",
                          "tokens", "ingested_at"}
        assert d["document_id"] == document_id_for(Path(d["source"]))
        assert d["chunks"] > 0 and d["tokens"] > 0
        assert d["pages"] == (3 if d["type"] in ("pdf", "pptx") else None)


def test_documents_list_table_and_empty(shared: Corpus) -> None:
    r = rag("documents", "list", data_dir=shared.data_dir, cwd=shared.root,
            env={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    for path in shared.files.values():
        assert document_id_for(path) in r.stdout and str(path) in r.stdout
    r = rag("documents", "list", "--collection", "other", data_dir=shared.data_dir,
            cwd=shared.root)
    assert r.returncode == 0
    assert r.stdout.strip() == "No documents in collection 'other'."


def test_documents_delete_by_path_and_by_id(ingested: Corpus) -> None:
    settings = ingested.settings
    bees, terns = ingested.files["bees.md"], ingested.files["terns.pptx"]
    terns_id = document_id_for(terns)
    r = rag("documents", "delete", Path("docs") / "bees.md", terns_id,
            data_dir=settings.data_dir, cwd=ingested.root)  # a relative path, from cwd
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith(f"Deleted {document_id_for(bees)} ({bees.resolve()}, ")
    assert out[1].startswith(f"Deleted {terns_id} ({terns.resolve()}, ")
    listed = json.loads(rag("documents", "list", "--json", data_dir=settings.data_dir,
                            cwd=ingested.root).stdout)
    assert {Path(d["source"]).name for d in listed} == \
        set(ingested.files) - {"bees.md", "terns.pptx"}
    store = open_store(settings)
    try:
        assert store.count(Where(equals={"document_id": terns_id})) == 0
        assert store.count(Where(equals={"document_id": document_id_for(bees)})) == 0
    finally:
        store.close()

    r = rag("documents", "delete", "nope-not-a-document", data_dir=settings.data_dir,
            cwd=ingested.root)
    assert r.returncode == 1
    assert one_line(r.stderr) == "error: no stored document with id or path 'nope-not-a-document'"


# -- the store is owned by one process --------------------------------------------------------

def test_second_process_is_told_the_store_is_in_use(shared: Corpus) -> None:
    holder = open_store(shared.settings)
    try:
        for args in (["documents", "list"], ["ingest", str(shared.root / "docs")]):
            r = rag(*args, data_dir=shared.data_dir, cwd=shared.root, settings=shared.settings)
            assert r.returncode == 3, (args, r.stdout, r.stderr)  # exit 3: the store is locked
            line = one_line(r.stderr)
            assert line.startswith("error: the embedded store")
            assert "is in use by another process" in line
    finally:
        holder.close()
    r = rag("documents", "list", "--json", data_dir=shared.data_dir, cwd=shared.root)
    assert r.returncode == 0 and len(json.loads(r.stdout)) == len(shared.files)


def test_paths_with_brackets_are_printed_verbatim(tmp_path: Path, settings: Settings,
                                                  ingest_paths: Any) -> None:
    """Rich markup must not eat '[draft]' out of a file name."""
    path = F.write_markdown(tmp_path / "docs" / "[draft] minutes [red].md")
    chunks = ingest_paths([path]).results[0].chunks
    r = rag("documents", "list", data_dir=settings.data_dir, cwd=tmp_path,
            env={"COLUMNS": "250"})
    assert r.returncode == 0 and str(path) in r.stdout, r.stdout
    r = rag("documents", "delete", path, data_dir=settings.data_dir, cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == f"Deleted {document_id_for(path)} ({path}, {chunks} chunks)."
