"""Fixtures for the REST API tests: the real app served by uvicorn on a free loopback port,
over the embedded Qdrant Edge store (the built-in sample ingested), the session's MiniLM
embedder, and the session's real llama.cpp server (SmolLM2) as the LLM.

Nothing is mocked: every test talks HTTP to a running server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from api_helpers import Api, llm_overrides, wait_warm
from support.servers import serve_in_thread

from app.api import create_app
from app.runtime import Runtime, sample_dir
from app.service import RagService
from core.settings import Settings


@pytest.fixture(scope="session")
def api_settings(make_settings: Callable[..., Settings], llm_server: Any,
                 tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """api_settings(llm_url=None, **overrides): settings on a new data dir, answering with
    the session's llama.cpp server (or `llm_url`), short answers (answer_reserve 64)."""

    def build(llm_url: str | None = None, **overrides: Any) -> Settings:
        overrides.setdefault("retrieval", {"answer_reserve": 64})
        return make_settings(tmp_path_factory.mktemp("api-data"),
                             llm=llm_overrides(llm_server, llm_url), **overrides)

    return build


@pytest.fixture(scope="session")
def make_service(embedder: Any) -> Iterator[Callable[..., RagService]]:
    """make_service(settings, with_sample=True): a RagService on the settings' store with
    the session embedder (the built-in sample ingested); all are closed at the end."""
    from ingest.pipeline import ingest

    made: list[RagService] = []

    def build(settings: Settings, with_sample: bool = True) -> RagService:
        runtime = Runtime(settings)
        runtime._embedder = embedder
        if with_sample:
            ingest(settings, [sample_dir()], store=runtime.store, embedder=embedder)
        service = RagService(settings, runtime=runtime)
        made.append(service)
        return service

    yield build
    for service in made:
        service.close()
        service.runtime.close()


@pytest.fixture(scope="session")
def sample_api(api_settings: Callable[..., Settings],
               make_service: Callable[..., RagService]) -> Iterator[Api]:
    """The API over the built-in sample, auth off, small limits (1 MB bodies, 1 MB files,
    3 files per upload, 2,000-character questions, budgets 512..16,384) so that each limit
    is cheap to hit."""
    settings = api_settings(api={"max_body_mb": 1, "max_upload_mb": 1, "max_files_per_upload": 3,
                                 "max_question_chars": 2000, "min_budget_tokens": 512,
                                 "max_budget_tokens": 16384})
    service = make_service(settings)
    app = create_app(settings, service=service)
    with serve_in_thread(app) as url:
        wait_warm(app)
        yield Api(url, settings, service, app)


@pytest.fixture
def client(sample_api: Api) -> Iterator[httpx.Client]:
    with sample_api.client() as c:
        yield c
