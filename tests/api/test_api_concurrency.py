"""Reads do not wait on each other over HTTP: retrievals run inside the store together (up to
`api.retrieval_threads` at once; the rest wait without a thread), /readyz (from its background
check) and the document listing answer while they are held there, and an oversized
conversation is refused before it reaches the store. The store is real and gated
(tests/support/gated_store.py): what is asserted is the order of events, not durations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_helpers import Api, assert_envelope, wait_warm
from support.gated_store import GatedStore
from support.servers import serve_in_thread

from app.api import create_app
from app.runtime import Runtime, sample_dir
from app.service import RagService

SENT = 44  # more than the 40 threads sync routes share
AT_ONCE = 3  # api.retrieval_threads, not the default (4): the setting is what bounds them
BODY = {"question": "How long should sourdough proof?", "budget_tokens": 2048,
        "context": "retrieve"}


@pytest.fixture(scope="module")
def gated_api(api_settings: Callable[..., Any], embedder: Any) -> Iterator[tuple[Api, GatedStore]]:
    from ingest.pipeline import ingest

    settings = api_settings(api={"max_body_mb": 4, "retrieval_threads": AT_ONCE})
    runtime = Runtime(settings)
    runtime._embedder = embedder
    ingest(settings, [sample_dir()], store=runtime.store, embedder=embedder)
    store = GatedStore(runtime.store)
    runtime.store = store
    service = RagService(settings, runtime=runtime)
    app = create_app(settings, service=service)
    with serve_in_thread(app) as url:
        wait_warm(app)
        yield Api(url, settings, service, app), store
    service.close()
    runtime.close()


def test_retrievals_run_a_few_at_once_and_health_and_listing_answer_meanwhile(
        gated_api: tuple[Api, GatedStore]) -> None:
    api, store = gated_api
    with api.client() as c:
        assert c.post("/v1/retrieve", json=BODY).status_code == 200  # warm: one retriever
        listed_before = c.get("/v1/documents").json()["data"]
    store.calls.clear()
    store.release.clear()
    store.hold = {"query"}
    answers: list[int] = []

    def retrieve() -> None:
        with api.client() as c:
            answers.append(c.post("/v1/retrieve", json=BODY).status_code)

    threads = [threading.Thread(target=retrieve) for _ in range(SENT)]
    try:
        for t in threads:
            t.start()
        for _ in range(1200):  # a bound for a busy machine, not a timing
            if len(store.named("query")) >= AT_ONCE:
                break
            threading.Event().wait(0.1)
        held = store.named("query")
        assert len(held) == AT_ONCE and all(q.exited is None for q in held)
        with api.client() as c:
            ready = c.get("/readyz")
            listing = c.get("/v1/documents")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["qdrant"]["ok"]
        assert ready.json()["checked_s_ago"] >= 0  # from the background check, not inline
        assert listing.status_code == 200 and listing.json()["data"] == listed_before
        assert not answers and all(q.exited is None for q in held)  # still held meanwhile
        assert len(store.named("query")) == AT_ONCE  # the others wait outside
    finally:
        store.hold = set()
        store.release.set()
        for t in threads:
            t.join(120)
    assert answers == [200] * SENT


def test_an_oversized_history_is_refused_before_the_store(
        gated_api: tuple[Api, GatedStore]) -> None:
    api, store = gated_api
    store.calls.clear()
    words = "many words about the lighthouse " * 5_000  # 160,000 characters a message
    history = [{"role": role, "content": words} for role in ("user", "assistant") * 4]
    with api.client() as c:
        r = c.post("/v1/retrieve", json={**BODY, "history": history})
        err = assert_envelope(r, 413, code="context_length_exceeded")
        assert "history" in err["message"] and "window" in err["message"]
        q = c.post("/v1/query", json={"question": "and then?", "history": history})
        assert_envelope(q, 413, code="context_length_exceeded")
    assert not store.named("query") and not store.named("scroll")
