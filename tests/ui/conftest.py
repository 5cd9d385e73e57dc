"""Fixtures for the UI tests: the real REST API in a subprocess on a temp data dir holding an
ingested fixture document, answering with the session's real llama.cpp server; and a second
API whose LLM server is down.

The API runs in its own process, as in production: the embedded store belongs to it, and
the UI under test reaches it only over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.ports import free_port
from ui_helpers import (
    API_KEY,
    FIXTURE_NAME,
    FIXTURE_TEXT,
    RunningApi,
    ingest_via_api,
    start_api,
    stop_api,
)


@pytest.fixture(scope="session")
def api_server(llm_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """The real API (with a key) over the real llama.cpp server, holding the fixture doc."""
    api = start_api(tmp_path_factory.mktemp("ui-api") / "data", llm_server.url)
    try:
        job = ingest_via_api(api, FIXTURE_NAME, FIXTURE_TEXT.encode())
        assert job["status"] == "done", job
        assert [r["status"] for r in job["results"]] == ["new"], job
        yield api
    finally:
        stop_api(api)


@pytest.fixture(scope="session")
def api_without_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """An API (no key) whose LLM server is not running: questions must fail with 503."""
    api = start_api(tmp_path_factory.mktemp("ui-api-nollm") / "data",
                    f"http://127.0.0.1:{free_port()}/v1", key=None, ready=False)
    try:
        yield api
    finally:
        stop_api(api)


@pytest.fixture
def ui_env(api_server: RunningApi, monkeypatch: pytest.MonkeyPatch) -> RunningApi:
    """RAG_UI__* pointing the UI at `api_server`."""
    monkeypatch.setenv("RAG_UI__API_URL", api_server.url)
    monkeypatch.setenv("RAG_UI__API_KEY", API_KEY)
    monkeypatch.setenv("RAG_UI__POLL_INTERVAL_S", "0.2")
    return api_server
