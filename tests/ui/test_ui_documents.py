"""The documents page's logic: rows, progress lines, and following a job to its end."""

from __future__ import annotations

from typing import Any

import pytest

from ui.client import ApiError
from ui.documents import document_rows, ingest, ingested_at, job_lines, progress
from ui.settings import UISettings


def test_rows_sorted_by_name_with_readable_times() -> None:
    docs = [{"document_id": "2", "source": "/d/b.pdf", "title": "B", "type": "pdf", "pages": 3,
             "chunks": 4, "tokens": 900, "ingested_at": "2025-01-02T03:04:05+00:00"},
            {"document_id": "1", "source": "/d/A.md", "title": "A", "type": "markdown",
             "pages": None, "chunks": 1, "tokens": 20, "ingested_at": ""}]
    rows = document_rows(docs)
    assert [r["name"] for r in rows] == ["A.md", "b.pdf"]
    assert rows[0]["pages"] == "" and rows[1]["pages"] == 3
    assert len(rows[1]["ingested at"]) == len("2025-01-02 03:04")
    assert ingested_at("not a date") == "not a date"
    assert ingested_at(0) != ""


def test_progress_line() -> None:
    assert progress({"status": "queued"}) == ("Waiting for the ingester…", 0.0)
    text, share = progress({"status": "running", "files_total": 4, "files_done": 1,
                            "chunks_embedded": 1200})
    assert text == "Ingesting… 1/4 files, 1,200 chunks embedded" and share == 0.25
    assert progress({"status": "done", "files_total": 1, "files_done": 1})[1] == 1.0


class _Jobs:
    """Stands in for the API's job endpoints in this unit test of the polling loop."""

    def __init__(self, states: list[dict[str, Any]]):
        self.states = states
        self.uploaded: list[Any] = []

    def upload(self, files: Any) -> dict[str, Any]:
        self.uploaded.append(files)
        return {"id": "j1", **self.states.pop(0)}

    def job(self, job_id: str) -> dict[str, Any]:
        assert job_id == "j1"
        return {"id": "j1", **self.states.pop(0)}


def test_ingest_polls_until_done_and_reports_each_change() -> None:
    jobs = _Jobs([{"status": "queued"}, {"status": "running", "files_total": 1},
                  {"status": "running", "files_total": 1},
                  {"status": "done", "files_total": 1, "files_done": 1,
                   "results": [{"path": "/up/a.md", "status": "new", "chunks": 3,
                                "reason": ""}]}])
    seen: list[tuple[str, float]] = []
    job = ingest(jobs, [("a.md", b"# A", "text/markdown")],  # type: ignore[arg-type]
                 lambda text, share: seen.append((text, share)), UISettings(), sleep=lambda s: None)
    assert job["status"] == "done" and not jobs.states
    assert [s[0] for s in seen] == ["Waiting for the ingester…", "Ingesting… 0/1 file",
                                    "Ingested. 1/1 file"]
    assert job_lines(job) == [("a.md: new (3 chunks)", True)]


def test_ingest_gives_up_after_its_timeout() -> None:
    jobs = _Jobs([{"status": "running"}] * 3)
    settings = UISettings(ingest_timeout_s=1e-9)
    with pytest.raises(ApiError, match="did not finish"):
        ingest(jobs, [], lambda *a: None, settings, sleep=lambda s: None)  # type: ignore[arg-type]


def test_failed_files_and_jobs_are_named() -> None:
    job = {"status": "failed", "error": "disk full",
           "results": [{"path": "x.pdf", "status": "failed", "reason": "not a PDF"}]}
    assert job_lines(job) == [("x.pdf: failed — not a PDF", False),
                              ("The ingestion failed: disk full", False)]
