"""Evaluation over HTTP: POST /v1/eval starts a job, GET /v1/eval/{id} follows it to its
results, GET /v1/eval lists saved runs; the real API, store, MiniLM and llama.cpp server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from api_helpers import Api, assert_envelope

from app.evaluation.corpus import temp_collections
from app.evaluation.probes import contains


def follow(client: httpx.Client, job: dict[str, Any], timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    seen = set()
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        r = client.get(f"/v1/eval/{job['id']}")
        assert r.status_code == 200, r.text
        job = r.json()
        seen.add(job["stage"])
    job["stages_seen"] = seen
    return job


def test_an_eval_job_runs_reports_and_is_listed(client: httpx.Client, sample_api: Api) -> None:
    r = client.post("/v1/eval", json={"probes": 3, "budgets": [64, 4096],
                                      "layouts": ["document"], "no_llm": True})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert r.headers["location"] == f"/v1/eval/{job['id']}"
    busy = client.post("/v1/eval", json={"probes": 1, "no_llm": True})
    assert_envelope(busy, 409, "eval_running")
    job = follow(client, job)
    assert job["status"] == "done", job
    run = job["run"]
    cells = {c["budget"]: c for c in run["cells"]}
    assert cells[4096]["recall"] == 1.0 and cells[64]["recall"] == 0.0
    assert run["recommendation"]["budget"] == 4096 and "measurements" not in run
    assert len(run["probes"]) == 6 and run["corpus"]["hash"]
    assert temp_collections(sample_api.settings) == []
    listed = client.get("/v1/eval").json()["data"]
    assert listed[0]["id"] == run["id"] and listed[0]["recommendation"]["budget"] == 4096
    saved = client.get(f"/v1/eval/{run['id']}").json()
    assert saved["status"] == "done" and saved["run"]["cells"] == run["cells"]


def test_bad_eval_requests_get_the_envelope(client: httpx.Client) -> None:
    assert_envelope(client.post("/v1/eval", json={"probes": 0}), 422, param="probes")
    assert_envelope(client.post("/v1/eval", json={"layouts": ["sideways"]}), 422)
    assert_envelope(client.post("/v1/eval", json={"budgets": []}), 422, param="budgets")
    assert_envelope(client.get("/v1/eval/nosuchrun"), 404)


@pytest.mark.slow
def test_the_served_model_writes_questions_and_answers(client: httpx.Client) -> None:
    r = client.post("/v1/eval", json={"probes": 1, "budgets": [1024], "layouts": ["document"],
                                      "kinds": ["passage"], "answers": True})
    assert r.status_code == 202, r.text
    job = follow(client, r.json()["job"], timeout_s=600)
    assert job["status"] == "done", job
    run = job["run"]
    for probe in run["probes"]:
        assert probe["made_by"] in ("llm", "mask")
        assert contains(probe["evidence"], probe["answer"])
        if probe["made_by"] == "llm":
            assert probe["question"].endswith("?") and probe["evidence"] not in probe["question"]
    cell = run["cells"][0]
    assert cell["answer_accuracy"] is not None and cell["cited_right"] is not None
    assert cell["ttft_s_p50"] is not None and cell["ttft_s_p50"] > 0
    assert run["recommendation"]["metric"] == "answer_accuracy"
