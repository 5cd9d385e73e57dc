"""bench/api_load.py's load generators against the real API: both send exactly the requests
asked for, each client on its own connection with its share of the question mix, and count
what did not answer 200 as errors (by status, or by the exception that stopped it)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from api_helpers import Api

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def api_load() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        import api_load as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_client_i_asks_every_clients_th_question_from_i(api_load: ModuleType) -> None:
    quota = api_load.Quota("/v1/retrieve", clients=3, budget=1024, left=2, deadline=float("inf"))
    questions = api_load.QUESTIONS
    assert [quota.body(1 + k * 3)["question"] for k in range(1, 4)] == [
        questions[4], questions[2], questions[0]]
    assert quota.body(0)["budget_tokens"] == 1024
    assert [quota.take(), quota.take(), quota.take()] == [True, True, False]


@pytest.mark.parametrize("generator", ["async", "threads"])
def test_a_generator_sends_the_requests_asked_for_and_records_each(
        api_load: ModuleType, sample_api: Api, generator: str) -> None:
    target = api_load.Api(url=sample_api.url, pid=None)
    run = api_load.load(target, "/v1/retrieve", clients=3, seconds=300, max_requests=7,
                        budget=1024, generator=generator)
    assert (run.ok, run.errors, run.statuses) == (7, 0, {200: 7})
    assert run.generator == generator and run.clients == 3
    assert len(run.latencies) == 7 and all(0 < t < run.seconds for t in run.latencies)
    assert run.bench_cpu > 0 and run.bench_cpu_ms_per_request is not None


def test_the_async_generator_counts_what_is_not_200_as_errors(
        api_load: ModuleType, sample_api: Api) -> None:
    target = api_load.Api(url=sample_api.url, pid=None)
    run = api_load.load(target, "/v1/no-such-route", clients=4, seconds=300, max_requests=6,
                        budget=1024, generator="async")
    assert (run.ok, run.errors, run.statuses) == (0, 6, {404: 6})
    assert run.throughput == 0.0


@pytest.mark.parametrize("generator", ["async", "threads"])
def test_a_request_that_fails_is_an_error_named_by_its_exception(
        api_load: ModuleType, generator: str) -> None:
    from support.ports import free_port

    nobody = api_load.Api(url=f"http://127.0.0.1:{free_port()}", pid=None)
    run = api_load.load(nobody, "/v1/retrieve", clients=2, seconds=300, max_requests=3,
                        budget=1024, generator=generator)
    assert (run.ok, run.errors, run.statuses) == (0, 3, {"ConnectError": 3})


def test_the_generator_list_names_what_it_does_not_know(api_load: ModuleType) -> None:
    import argparse

    assert api_load.generator_list("async, threads") == ["async", "threads"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown generator fibers"):
        api_load.generator_list("async,fibers")
