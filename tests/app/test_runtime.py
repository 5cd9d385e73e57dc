"""Sharing the store between threads (app/runtime.py): retrievals read Qdrant Edge, the
embedder and the tokenizer from several threads at once with the same results as one at a
time; two retrievals are inside the store together; a write waits for the reads in the
store and keeps new ones out. Real store, embedder and tokenizer; the order of calls is
read from their entry and exit timestamps, never from durations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gated_store import GatedStore
from support.ports import free_port

from app.runtime import Runtime, sample_dir
from app.service import RagService
from core.choices import ContextMode
from retrieval.service import RetrieveOptions

QUESTIONS = ["How long can the lighthouse lamp run on its reserve batteries?",
             "How long should sourdough proof?", "Can I take a city bike on the train?",
             "What does the keeper clean every Friday?"]
OPTIONS = RetrieveOptions(budget_tokens=2048, context_mode=ContextMode.RETRIEVE)  # searched


@pytest.fixture(scope="module")
def gated(make_settings: Any, embedder: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RagService, GatedStore]]:
    """A service over the sample (and one more document to delete), its store gated; the
    LLM URL answers nobody, so retrieval uses the configured window."""
    from ingest.pipeline import ingest

    extra = tmp_path_factory.mktemp("extra") / "to-delete.txt"
    extra.write_text("A note about the lighthouse keeper's spare lamp, to be deleted.\n")
    settings = make_settings(tmp_path_factory.mktemp("runtime-data"),
                             llm={"url": f"http://127.0.0.1:{free_port()}/v1"})
    runtime = Runtime(settings)
    runtime._embedder = embedder
    ingest(settings, [sample_dir(), extra], store=runtime.store, embedder=embedder)
    store = GatedStore(runtime.store)
    runtime.store = store
    with RagService(settings, runtime=runtime) as service:
        yield service, store
    runtime.close()


def _passages(service: RagService, question: str) -> list[tuple[str, int, int]]:
    r = service.retrieve(question, OPTIONS)
    return [(p.document_id, p.first, p.last) for p in r.packing.passages]


def _run_together(target: Any, args: list[tuple[Any, ...]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    return threads


def test_concurrent_retrievals_match_one_at_a_time(gated: tuple[RagService, GatedStore]) -> None:
    service, _ = gated
    serial = {q: _passages(service, q) for q in QUESTIONS}
    assert all(serial.values())
    got: dict[int, list[tuple[str, int, int]]] = {}
    start = threading.Barrier(8)

    def ask(i: int) -> None:
        start.wait(30)
        for _ in range(3):
            got[i] = _passages(service, QUESTIONS[i % len(QUESTIONS)])
            assert got[i] == serial[QUESTIONS[i % len(QUESTIONS)]]

    for t in _run_together(ask, [(i,) for i in range(8)]):
        t.join(120)
    assert len(got) == 8


def test_two_retrievals_are_inside_the_store_at_once(
        gated: tuple[RagService, GatedStore]) -> None:
    service, store = gated
    store.calls.clear()
    # Each thread's first query waits until the other's has entered: with reads serialised
    # the second never could, and the barrier breaks.
    store.barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def ask(q: str) -> None:
        try:
            service.retrieve(q, OPTIONS)
        except BaseException as exc:
            errors.append(exc)

    try:
        for t in _run_together(ask, [(QUESTIONS[0],), (QUESTIONS[1],)]):
            t.join(60)
    finally:
        store.barrier = None
    assert not errors, errors
    first = {}
    for call in store.named("query"):
        first.setdefault(call.thread, call)
    a, b = first.values()
    assert a.exited is not None and b.exited is not None
    assert a.entered < b.exited and b.entered < a.exited  # the two queries overlapped


def test_a_write_waits_for_reads_and_keeps_new_reads_out(
        gated: tuple[RagService, GatedStore]) -> None:
    service, store = gated
    lock = service.runtime.lock
    store.calls.clear()
    store.release.clear()
    store.held.clear()
    store.hold = {"query"}
    doc = next(d for d in service.documents() if Path(d.source).name == "to-delete.txt")
    reader = _run_together(lambda: service.retrieve(QUESTIONS[0], OPTIONS), [()])[0]
    try:
        assert store.held.wait(60)  # the retrieval is inside the store, held there
        writer = _run_together(service.delete_document, [(doc.document_id,)])[0]
        for _ in range(5000):
            if lock.writers_waiting():
                break
            threading.Event().wait(0.001)
        assert lock.writers_waiting() == 1 and not store.named("delete")
        assert service.documents()  # the listing answers meanwhile (kept since the last write)
    finally:
        store.hold = set()
        store.release.set()
    reader.join(60)
    writer.join(60)
    [query] = store.named("query")[:1]
    deletes = store.named("delete")
    assert deletes and query.exited is not None and query.exited < deletes[0].entered
    assert "to-delete.txt" not in {Path(d.source).name for d in service.documents()}
