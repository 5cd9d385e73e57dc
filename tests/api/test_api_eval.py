"""Evaluation over HTTP: POST /v1/eval starts a job, GET /v1/eval/{id} follows it to its
results, GET /v1/eval lists saved runs; the real API, store, MiniLM and llama.cpp server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import Api, assert_envelope
from support.ports import free_port
from support.servers import serve_in_thread

from app.api import create_app
from app.evaluation import EvalOptions
from app.evaluation.corpus import temp_collections
from app.evaluation.jobs import EvalJobs
from app.evaluation.probes import contains
from app.service import RagService
from core.choices import Layout
from core.settings import Settings
from serving.llamacpp import port_in_use


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
    # An LLM at llm.url is not needed, but its window and tokenizer are packed for.
    assert run["model"] == sample_api.service.served(require_server=False).model != "none"
    assert temp_collections(sample_api.settings) == []
    listed = client.get("/v1/eval").json()["data"]
    assert listed[0]["id"] == run["id"] and listed[0]["recommendation"]["budget"] == 4096
    saved = client.get(f"/v1/eval/{run['id']}").json()
    assert saved["status"] == "done" and saved["run"]["cells"] == run["cells"]


def test_a_collection_without_documents_is_refused_with_the_envelope(
        api_settings: Callable[..., Settings],
        make_service: Callable[..., RagService]) -> None:
    settings = api_settings()
    service = make_service(settings, with_sample=False)
    with serve_in_thread(create_app(settings, service=service)) as url, \
            httpx.Client(base_url=url, timeout=60) as c:
        err = assert_envelope(c.post("/v1/eval", json={"no_llm": True}), 409, "empty_collection")
        assert err["message"] == ("collection 'documents' does not exist: ingest documents "
                                  "into it first, then evaluate it")
        with service.runtime.lock.write():
            service.runtime.store.ensure_collection(service.runtime.embedder().dim)
        err = assert_envelope(c.post("/v1/eval", json={"no_llm": True}), 409, "empty_collection")
        assert err["message"].startswith("collection 'documents' is empty")  # not eval_running
        assert c.get("/v1/eval").json()["data"] == []
    assert temp_collections(settings) == []


def test_a_no_llm_job_starts_no_llm_when_none_is_configured(
        tmp_path: Path, make_settings: Callable[..., Settings],
        make_service: Callable[..., RagService]) -> None:
    """Without llm.url the embedded llama.cpp server is the LLM: a job that needs no model
    must not start it (nor wait for it). Driven through the API's job runner directly: the
    app's warm-up starts that server on purpose, for answers."""
    settings = make_settings(tmp_path / "data", cpu_server={"port": free_port()})
    assert settings.llm.url is None and not settings.llm.urls
    service = make_service(settings)
    jobs = EvalJobs(service)
    job = jobs.submit(EvalOptions(probes=2, budgets=(4096,), layouts=(Layout.DOCUMENT,),
                                  llm_questions=False))
    deadline = time.monotonic() + 240
    while (state := jobs.get(job.id))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["status"] == "done", state
    assert state["run"]["model"] == "none" and state["run"]["cells"][0]["recall"] == 1.0
    assert service.llm_client() is None  # the served model was never started
    assert not port_in_use(settings.cpu_server)  # and nothing serves its port


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
    assert "answer" in job["stages_seen"] and "retrieve" not in job["stages_seen"]
    cell = run["cells"][0]
    assert cell["answer_accuracy"] is not None and cell["cited_right"] is not None
    assert cell["ttft_s_p50"] is not None and cell["ttft_s_p50"] > 0
    assert run["recommendation"]["metric"] == "answer_accuracy"
