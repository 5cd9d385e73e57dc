"""The evaluation page's logic, free of Streamlit: the request, the job followed to its end,
the chart's data (recall against budget per layout), and the tables of cells and runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ui.client import ApiClient, ApiError
from ui.documents import ingested_at, poll
from ui.settings import UISettings

FINISHED = ("done", "failed")
BUDGETS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
WAIT_S = 3600.0  # an evaluation with answers on a CPU takes many minutes
_STAGES = {"read": "Reading documents", "questions": "Writing questions",
           "ingest": "Ingesting the needle copies", "retrieve": "Retrieving",
           "answer": "Retrieving and answering"}


def short_tokens(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def request(probes: int, budgets: list[int], layouts: list[str], modes: list[str],
            answers: bool, model_questions: bool) -> dict[str, Any]:
    return {"probes": probes, "budgets": sorted(budgets), "layouts": layouts, "modes": modes,
            "answers": answers, "no_llm": not model_questions}


def progress(job: dict[str, Any]) -> tuple[str, float]:
    """A line for the progress bar, and the share of the current stage done (0..1)."""
    state = job.get("status") or "queued"
    if state == "queued":
        return "Waiting to start…", 0.0
    if state in FINISHED:
        return ("Done." if state == "done" else "Failed."), 1.0
    total, done = int(job.get("total") or 0), int(job.get("done") or 0)
    text = _STAGES.get(str(job.get("stage")), "Starting") + "…"
    if total:
        text += f" {done}/{total}"
    return text, min(1.0, done / total) if total else 0.0


def follow(client: ApiClient, job: dict[str, Any], report: Callable[[str, float], Any],
           settings: UISettings, sleep: Callable[[float], Any] = time.sleep) -> dict[str, Any]:
    """Polls the job until it ends, calling `report(text, share)` on every change."""
    late = ApiError(f"The evaluation did not finish within {WAIT_S:.0f} s.",
                    hint="It goes on in the API; it will appear under Earlier runs.")
    return poll(job, client.eval_job, progress, report, WAIT_S, late, settings.poll_interval_s,
                sleep)


def chart_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-form rows for the chart: budget, series (layout, and mode when several), metric,
    value: recall always, answer accuracy when answered."""
    several = len(run.get("modes") or []) > 1
    rows = []
    for c in run.get("cells") or []:
        series = f"{c['layout']} / {c['mode']}" if several else c["layout"]
        for metric, key in (("recall", "recall"), ("answer accuracy", "answer_accuracy")):
            if c.get(key) is not None:
                rows.append({"budget": c["budget"], "series": series, "metric": metric,
                             "value": c[key]})
    return rows


def cell_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in run.get("cells") or []:
        row = {"budget": short_tokens(c["budget"]), "layout": c["layout"], "mode": c["mode"],
               "recall": c["recall"], "needles": c.get("recall_needle"),
               "passages": c.get("recall_passage"), "evidence rank": c.get("rank_median"),
               "tokens": c["tokens_mean"], "retrieve ms": c["retrieve_ms_p50"]}
        if c.get("answer_accuracy") is not None:
            row.update({"answers": c["answer_accuracy"], "cited right": c.get("cited_right"),
                        "first token s": c.get("ttft_s_p50")})
        rows.append(row)
    return rows


def recommendation(run: dict[str, Any]) -> str:
    rec = run.get("recommendation")
    if not rec:
        return ""
    return (f"Recommended: budget {short_tokens(rec['budget'])} tokens, layout "
            f"{rec['layout']} — {rec['reason']}")


def run_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier runs, newest first: when, what, and what each recommended."""
    rows = []
    for r in runs:
        rec = r.get("recommendation") or {}
        rows.append({"id": r["id"], "when": ingested_at(r.get("created_at")),
                     "documents": r.get("documents"), "probes": r.get("probes"),
                     "modes": ", ".join(r.get("modes") or []),
                     "recommended": (f"{short_tokens(rec['budget'])} · {rec['layout']}"
                                     if rec else ""),
                     "corpus": r.get("corpus_hash"), "settings": r.get("settings_hash")})
    return rows
