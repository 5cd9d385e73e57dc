"""The evaluation page: its logic as pure functions, and the page itself with Streamlit's
AppTest against the real API (a real evaluation job on the fixture document)."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import ROOT, RunningApi

from ui.client import ApiError
from ui.evaluation import chart_rows, follow, progress, recommendation, request, run_rows
from ui.settings import UISettings

APP = str(ROOT / "ui" / "app.py")
RUN = {"id": "r1", "modes": ["hybrid"], "recommendation": {
    "budget": 8192, "layout": "document", "reason": "recall 1.00 at 8k tokens"},
    "cells": [{"budget": 4096, "layout": "document", "mode": "hybrid", "recall": 0.5,
               "answer_accuracy": None, "tokens_mean": 3000, "retrieve_ms_p50": 4.0},
              {"budget": 8192, "layout": "document", "mode": "hybrid", "recall": 1.0,
               "answer_accuracy": 0.5, "tokens_mean": 6000, "retrieve_ms_p50": 5.0}]}


def test_progress_chart_rows_and_recommendation() -> None:
    assert progress({"status": "queued"}) == ("Waiting to start…", 0.0)
    assert progress({"status": "running", "stage": "retrieve", "done": 3, "total": 12}) == \
        ("Retrieving… 3/12", 0.25)
    assert progress({"status": "running", "stage": "answer", "done": 1, "total": 4}) == \
        ("Retrieving and answering… 1/4", 0.25)
    assert progress({"status": "failed"}) == ("Failed.", 1.0)
    rows = chart_rows(RUN)
    assert [(r["budget"], r["metric"], r["value"]) for r in rows] == [
        (4096, "recall", 0.5), (8192, "recall", 1.0), (8192, "answer accuracy", 0.5)]
    assert {r["series"] for r in rows} == {"document"}
    assert recommendation(RUN).startswith("Recommended: budget 8k tokens, layout document")
    assert request(3, [8192, 4096], ["edges"], [], False, True) == {
        "probes": 3, "budgets": [4096, 8192], "layouts": ["edges"], "modes": [],
        "answers": False, "no_llm": False}
    listed = run_rows([{"id": "r1", "created_at": "2026-01-02T03:04:05+00:00", "modes": ["dense"],
                        "recommendation": RUN["recommendation"]}])
    assert listed[0]["recommended"] == "8k · document" and listed[0]["modes"] == "dense"


class _Jobs:
    """Stands in for the API's evaluation endpoints in this unit test of the polling loop."""

    def __init__(self, states: list[dict[str, Any]]):
        self.states = states

    def eval_job(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id, **self.states.pop(0)}


def test_follow_polls_until_done() -> None:
    jobs = _Jobs([{"status": "running", "stage": "ingest", "done": 1, "total": 2},
                  {"status": "done", "run": RUN}])
    seen: list[str] = []
    job = follow(jobs, {"id": "j", "status": "queued"},  # type: ignore[arg-type]
                 lambda text, share: seen.append(text), UISettings(), sleep=lambda s: None)
    assert job["run"] == RUN and not jobs.states
    assert seen == ["Waiting to start…", "Ingesting the needle copies… 1/2", "Done."]


def test_follow_gives_up_after_its_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    import ui.evaluation

    monkeypatch.setattr(ui.evaluation, "WAIT_S", 1e-9)
    with pytest.raises(ApiError, match="did not finish"):
        follow(_Jobs([{"status": "running"}] * 3), {"id": "j", "status": "running"},  # type: ignore[arg-type]
               lambda *a: None, UISettings(), sleep=lambda s: None)


@pytest.mark.slow
def test_evaluation_page_runs_draws_and_lists(ui_env: RunningApi) -> None:
    at = AppTest.from_file(APP, default_timeout=240).run()
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.number_input(key="eval_probes").set_value(2)
    at.multiselect(key="eval_budgets").set_value([2048, 4096])
    at.multiselect(key="eval_layouts").set_value(["document"])
    next(b for b in at.button if b.label == "Run the evaluation").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.status[0].proto.label == "Evaluation done"
    assert at.success and at.success[0].value.startswith("Recommended: budget")
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1, "no chart was drawn"
    spec = charts[0].proto.spec
    assert '"budget"' in spec and '"log"' in spec  # recall against budget, on a log axis
    cells = at.dataframe[-1].value
    assert list(cells["budget"]) == ["2k", "4k"] and cells["recall"].max() <= 1.0
    with ui_env.client() as api:
        runs = api.eval_runs()
    assert runs and any(r["id"] == runs[0]["id"] for r in runs)
    assert at.dataframe[0].value["id"].iloc[0] == runs[0]["id"]  # the earlier runs' table
