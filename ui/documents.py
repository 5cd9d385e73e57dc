"""The documents page's logic, free of Streamlit: table rows, and an upload followed to its
end by polling the ingestion job."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ui.client import ApiClient, ApiError
from ui.ledger import file_name
from ui.settings import UISettings

FINISHED = ("done", "failed")
TABLE_COLUMNS = ("name", "type", "pages", "chunks", "tokens", "ingested at")


def ingested_at(value: Any) -> str:
    """ISO time (or epoch seconds) as local `YYYY-MM-DD HH:MM`; anything else as it is."""
    if value in (None, ""):
        return ""
    try:
        when = (datetime.fromtimestamp(float(value)) if isinstance(value, int | float)
                else datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def document_rows(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per document: name, type, pages, chunks, tokens, ingested at; by name."""
    rows = [{"name": file_name(d.get("source") or d.get("title")), "type": d.get("type") or "",
             "pages": d.get("pages") if d.get("pages") is not None else "",
             "chunks": d.get("chunks") or 0, "tokens": d.get("tokens") or 0,
             "ingested at": ingested_at(d.get("ingested_at")), "source": d.get("source") or "",
             "id": d.get("document_id")} for d in documents]
    return sorted(rows, key=lambda r: (r["name"].lower(), r["source"]))


def progress(job: dict[str, Any]) -> tuple[str, float]:
    """A line for the progress bar, and the share done (0..1)."""
    total = int(job.get("files_total") or 0)
    done = int(job.get("files_done") or 0)
    chunks = int(job.get("chunks_embedded") or 0)
    state = job.get("status") or "queued"
    text = {"queued": "Waiting for the ingester…", "running": "Ingesting…",
            "done": "Ingested.", "failed": "Failed."}.get(state, f"{state}…")
    if total:
        text += f" {done}/{total} file{'s' * (total != 1)}"
    if chunks:
        text += f", {chunks:,} chunks embedded"
    share = 1.0 if state in FINISHED else (done / total if total else 0.0)
    return text, min(max(share, 0.0), 1.0)


def ingest(client: ApiClient, files: list[tuple[str, bytes, str | None]],
           report: Callable[[str, float], Any], settings: UISettings,
           sleep: Callable[[float], Any] = time.sleep) -> dict[str, Any]:
    """Uploads `files`, then polls the job until it is done or failed, calling
    `report(text, share)` on every change. Returns the finished job."""
    late = ApiError(f"Ingestion did not finish within {settings.ingest_timeout_s:.0f} s.",
                    hint="It goes on in the API; reload this page later to see the files.")
    return poll(client.upload(files), client.job, progress, report, settings.ingest_timeout_s,
                late, settings.poll_interval_s, sleep)


def poll(job: dict[str, Any], fetch: Callable[[str], dict[str, Any]],
         describe: Callable[[dict[str, Any]], tuple[str, float]],
         report: Callable[[str, float], Any], timeout_s: float, late: ApiError, every_s: float,
         sleep: Callable[[float], Any] = time.sleep) -> dict[str, Any]:
    """Polls a background job (`fetch(id)`) until it is done or failed, calling
    `report(*describe(job))` on every change; raises `late` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: tuple[str, float] | None = None
    while True:
        now = describe(job)
        if now != last:
            report(*now)
            last = now
        if job.get("status") in FINISHED:
            return job
        if time.monotonic() > deadline:
            raise late
        sleep(every_s)
        job = fetch(str(job["id"]))


def job_lines(job: dict[str, Any]) -> list[tuple[str, bool]]:
    """What happened to each file of a finished job: (line, ok)."""
    lines: list[tuple[str, bool]] = []
    for r in job.get("results") or []:
        status = str(r.get("status") or "")
        name = file_name(r.get("path"))
        ok = status != "failed"
        text = f"{name}: {status}"
        if r.get("chunks"):
            text += f" ({r['chunks']} chunk{'s' * (r['chunks'] != 1)})"
        if r.get("reason"):
            text += f" — {r['reason']}"
        lines.append((text, ok))
    if job.get("status") == "failed" and job.get("error"):
        lines.append((f"The ingestion failed: {job['error']}", False))
    return lines
