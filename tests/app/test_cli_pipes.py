"""The `rag` command in a pipe and in an 80-column terminal: tab-separated rows for a pipe,
a documents table that keeps long paths readable, relative path globs matching a path's end,
and help that reads well at 80 columns."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from rich.console import Console
from test_cli_errors import rag

from app.console import documents_table
from core.settings import Settings
from ingest.documents import list_documents
from ingest.store import open_store

DEEP = "projects/2024/quarterly-reports/final-versions-approved-by-the-board"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the commands run in; the store is its data/."""
    return tmp_path_factory.mktemp("pipes")


@pytest.fixture(scope="module")
def settings(root: Path, make_settings: Any) -> Settings:
    return make_settings(root / "data")


@pytest.fixture(scope="module")
def corpus(root: Path, settings: Settings, embedder: Any) -> dict[str, Path]:
    """Three documents under root/docs, one of them deep with a long name, ingested."""
    from ingest.pipeline import ingest

    files = {
        "bees": F.write_markdown(root / "docs" / "bees.md"),
        "bakery": F.write_text(root / "docs" / "notes" / "bakery.txt"),
        "report": F.write_text(root / "docs" / DEEP / "q3-revenue-report-final.txt",
                               "Revenue grew by a third in the third quarter.\n"),
    }
    report = ingest(settings, [root / "docs"], embedder=embedder)
    assert report.count("new") == 3 and not report.failed
    return files


def test_a_pipe_gets_one_tab_separated_row_per_document(
        root: Path, corpus: dict[str, Path]) -> None:
    r = rag("documents", "list", cwd=root, COLUMNS="80")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == 3 and all(len(row) == 7 for row in rows)
    assert sorted(row[6] for row in rows) == sorted(str(p) for p in corpus.values())
    deep = next(row for row in rows if row[6].endswith("report-final.txt"))
    assert deep[1] == "text" and int(deep[3]) >= 1 and deep[5].startswith("20")


def test_an_80_column_table_keeps_long_paths_on_one_readable_line(
        root: Path, settings: Settings, corpus: dict[str, Path]) -> None:
    store = open_store(settings)
    try:
        docs = list_documents(store)
    finally:
        store.close()
    base, table = documents_table(docs, 80, str(root))
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(table)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert base == str(root)
    assert len(lines) == 1 + len(docs), lines  # a header and one line each: nothing folds
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split()[-1] == "source"
    text = "\n".join(lines)
    assert "docs/bees.md" in text and "docs/notes/bakery.txt" in text
    deep = next(line for line in lines if "…" in line)
    assert deep.split()[-1].startswith("docs/") and deep.endswith("report-final.txt")


@pytest.mark.slow  # the question is embedded: the subprocess loads the embedder
def test_a_relative_path_glob_matches_the_end_of_the_path(
        root: Path, corpus: dict[str, Path]) -> None:
    r = rag("retrieve", "what grew", "--filter", "path=*report*", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    sources = {p["source"] for p in json.loads(r.stdout)["passages"]}
    assert sources == {str(corpus["report"])}


@pytest.mark.slow  # five runs of the command
def test_help_reads_well_at_80_columns(tmp_path: Path) -> None:
    pages = {}
    for args in (["--help"], ["ingest", "--help"], ["documents", "list", "--help"],
                 ["retrieve", "--help"], ["eval", "--help"]):
        r = rag(*args, cwd=tmp_path, COLUMNS="80")
        assert r.returncode == 0, r.stderr
        assert "<bool>" not in r.stdout and f"Usage: rag {' '.join(args[:-1])}" in r.stdout
        assert all(len(line) <= 80 for line in r.stdout.splitlines())
        pages[args[0]] = r.stdout
    # A command's line is its first sentence, flowing to the width: no line ends where the
    # docstring's source wrapped it.
    chat = [line for line in pages["--help"].splitlines() if "│ chat " in line]
    assert len(chat) == 1 and chat[0].rstrip(" │").endswith("see the history.")
    # `eval` loads its module only when run or listed, and reads as the others do.
    assert "│ eval " in pages["--help"]
    assert "--no-llm" in pages["eval"] and "--compare" in pages["eval"]
    assert "Runs are saved under the data directory." in " ".join(
        pages["eval"].replace("│", " ").split())
    assert "unsupported inside a folder" in pages["ingest"]
    flat = " ".join(pages["retrieve"].replace("│", " ").split())
    assert "matches the whole path when absolute, else its end" in flat
