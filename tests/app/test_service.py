"""`ask` end to end: real embedded Qdrant, MiniLM, the GGUF's own tokenizer and a real
llama.cpp server over HTTP with streaming. The 135M model's wording is not asserted; what
the app does with it is: streaming, citations that map to real passages, the budget that
follows the server's window, and clear errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.ports import free_port

from app.citations import cite
from app.llm import LLMUnavailableError, PromptTooLongError
from app.runtime import Runtime
from app.service import RagService, _usage, search_query
from core.errors import SettingsError
from core.settings import Settings
from retrieval.prompt import Message, build_messages
from retrieval.service import Filters, RetrieveOptions
from serving import llamacpp

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

FACTS = {
    "lighthouse.md": "The lighthouse lamp runs for thirty-six hours on its reserve batteries.",
    "bakery.txt": "The bakery on Mill Street proofs its rye dough for fourteen hours.",
    "bikes.md": "A day pass for the city bikes costs four euros and fifty cents.",
}
_WORDS = ("harbor garden ledger river meadow copper lantern quarry orchard violin glacier canyon "
          "village market signal timber anchor compass mirror saddle thimble beacon ferry")
WORDS = _WORDS.split()


def filler(seed: int, sentences: int) -> str:
    rnd = random.Random(seed)
    return " ".join(
        f"The {rnd.choice(WORDS)} near the {rnd.choice(WORDS)} was {rnd.choice(WORDS)}ed "
        f"{rnd.randint(2, 99)} times by the {rnd.choice(WORDS)} keeper." for _ in range(sentences))


WINDOW = 3072  # a small window keeps CPU prefill short; the arithmetic is the same at 128k


@pytest.fixture(scope="module")
def llm_server() -> Iterator[llamacpp.RunningServer]:
    """This module's own llama.cpp server (SmolLM2, 3,072-token window)."""
    from core.settings import CPUServerSettings

    cfg = CPUServerSettings(port=free_port(), threads=1, n_ctx=WINDOW)
    server = llamacpp.start(cfg)
    server.settings = cfg  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three documents of ~1,500 tokens each (together over the window), one fact each."""
    root = tmp_path_factory.mktemp("corpus")
    for i, (name, fact) in enumerate(FACTS.items()):
        body = filler(i, 40) + "\n\n" + fact + "\n\n" + filler(i + 10, 40)
        (root / name).write_text(f"# {name.split('.')[0].title()}\n\n{body}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def settings(corpus: Path, tmp_path_factory: pytest.TempPathFactory, make_settings: Any,
             llm_server: llamacpp.RunningServer, embedder: Any) -> Settings:
    # Short answers keep the 135M model's time down; the arithmetic is the same.
    s = make_settings(tmp_path_factory.mktemp("data"), llm={"url": llm_server.url},
                      chunking={"size": 256, "overlap": 32}, retrieval={"answer_reserve": 64})
    from ingest.pipeline import ingest

    report = ingest(s, [corpus], embedder=embedder)
    assert report.count("new") == 3
    return s


@pytest.fixture(scope="module")
def service(settings: Settings, embedder: Any) -> Iterator[RagService]:
    runtime = Runtime(settings)
    runtime._embedder = embedder
    with RagService(settings, runtime=runtime) as svc:
        yield svc
    runtime.close()


def small(budget: int = 2048, **kw: Any) -> RetrieveOptions:
    return RetrieveOptions(budget_tokens=budget, **kw)


def test_answer_streams_and_its_citations_are_real_passages(service: RagService) -> None:
    events = list(service.stream("How long does the lighthouse lamp run on its reserve batteries?",
                                 options=small()))
    kinds = [e.kind for e in events]
    assert kinds[0] == "retrieval" and kinds[-1] == "done"
    deltas = [e.text for e in events if e.kind == "delta"]
    assert len(deltas) >= 3, "the answer arrives in pieces"
    answer = events[-1].answer
    assert answer is not None
    assert answer.answer == "".join(deltas).strip()
    passages = {p.label: p for p in answer.retrieval.packing.passages}
    assert any(FACTS["lighthouse.md"] in p.text for p in passages.values())
    for c in answer.citations:
        assert c.label in passages
        assert c.text == passages[c.label].text and c.source == passages[c.label].source
        assert c.quote in c.text
    assert answer.usage["prompt_tokens"] > 0 and answer.usage["time_to_first_token_s"] > 0


def test_prompt_tokens_are_counted_exactly_with_the_served_models_tokenizer(
        service: RagService) -> None:
    """The service's count of the whole prompt (ChatML template + GGUF tokenizer) equals the
    server's own usage.prompt_tokens."""
    served = service.served()
    assert served.chat_format == "chatml" and served.counter.name.startswith("gguf:")
    question = "What does a day pass for the city bikes cost?"
    retrieval = service.retrieve(question, small(1500))
    messages = build_messages(retrieval.packing.context, question)
    body = {"messages": messages, "max_tokens": 1}
    usage = httpx.post(served.url + "/chat/completions", json=body, timeout=120).json()["usage"]
    assert service._prompt_tokens(served, messages) == usage["prompt_tokens"]
    b = retrieval.budget
    assert retrieval.packing.used_tokens <= b.available == 1500 - b.answer_reserve - b.prompt_tokens


def test_budget_follows_the_servers_window(service: RagService) -> None:
    """llama-cpp-python does not report its window: the default 131,072 request packs all
    three documents (~4.5k tokens), the server refuses it with its real window, and the
    context is packed again for that window."""
    answer = service.ask("What does a day pass for the city bikes cost?")
    b = answer.retrieval.budget
    assert b.context_window == WINDOW
    assert answer.retrieval.packing.used_tokens <= b.available
    assert b.available == WINDOW - b.answer_reserve - b.prompt_tokens
    assert b.available - answer.retrieval.packing.used_tokens < 300  # filled, not just cut
    assert answer.usage["prompt_tokens_counted"] <= WINDOW - b.answer_reserve
    assert service.served().context_window == WINDOW  # learned once, kept


def test_cpu_default_takes_the_window_from_the_cpu_server_settings(
        settings: Settings, llm_server: llamacpp.RunningServer, service: RagService) -> None:
    """No llm.url: the embedded default (our llama.cpp server; one already listening on the
    configured port is reused) sets the window from cpu_server.n_ctx."""
    cpu = llm_server.settings  # type: ignore[attr-defined]
    s = settings.model_copy(update={"llm": settings.llm.model_copy(update={"url": None}),
                                    "cpu_server": cpu})
    svc = RagService(s, runtime=service.runtime)
    try:
        served = svc.served()
        assert (served.context_window, served.window_source) == (WINDOW, "cpu_server")
        assert served.url == llm_server.url
    finally:
        svc.close()


def test_conversation_too_long_for_the_window_is_a_clear_error(service: RagService) -> None:
    history = tuple(Message("user" if i % 2 == 0 else "assistant", filler(i, 30)) for i in range(8))
    with pytest.raises(PromptTooLongError, match="window is 3,072: shorten the conversation"):
        list(service.stream("And the bikes?", history, small(4096)))


def test_follow_up_on_the_same_material_reuses_the_packed_context(service: RagService) -> None:
    options = small(2500, filters=Filters(path=None, types=("markdown",)))
    first = service.ask("How long does the lighthouse lamp run on reserve batteries?",
                        options=options)
    history = (Message("user", first.question), Message("assistant", first.answer))
    follow = service.ask("And on how many batteries does the lighthouse lamp run?", history, options)
    assert follow.reused_context, follow.retrieval.to_dict()
    # The same context, or (the conversation grew) its first passages: the same prefix.
    context = follow.retrieval.packing.context
    assert context and first.retrieval.packing.context.startswith(context)
    assert follow.retrieval.packing.used_tokens <= follow.retrieval.budget.available
    assert "lighthouse lamp run on reserve batteries" in follow.search_query
    # A different subject packs anew.
    other = service.ask("What does a day pass for the city bikes cost?",
                        (*history, Message("user", follow.question),
                         Message("assistant", follow.answer)), options)
    assert not other.reused_context


def test_empty_and_oversized_questions_are_refused(service: RagService) -> None:
    with pytest.raises(SettingsError, match="question: must not be empty"):
        service.ask("   ")
    with pytest.raises(SettingsError, match="question: longer than 8,000"):
        service.ask("why " * 3000)


def test_server_down_is_a_clear_error(settings: Settings, service: RagService) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    s = settings.model_copy(update={"llm": settings.llm.model_copy(update={"url": url,
                                                                          "retries": 0})})
    svc = RagService(s, runtime=service.runtime)  # the module's store, not closed here
    with pytest.raises(LLMUnavailableError, match=f"not reachable at {url}"):
        svc.ask("How long does the lamp run?")
    # Retrieval needs no LLM: it still works, with the configured window.
    assert svc.retrieve("How long does the lamp run?", small()).packing.passages


def test_search_query_carries_the_previous_question() -> None:
    history = (Message("user", "What does the bakery bake?"), Message("assistant", "Rye bread."))
    assert search_query("How long?", history) == "What does the bakery bake?\nHow long?"
    assert search_query("How long?", ()) == "How long?"


def test_cached_tokens_are_reported_when_the_server_gives_them() -> None:
    usage = _usage({"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912,
                    "prompt_tokens_details": {"cached_tokens": 768}}, 901, 0.0, 0.5)
    assert (usage["prompt_tokens"], usage["cached_tokens"], usage["prompt_tokens_counted"]) == (
        900, 768, 901)
    assert "cached_tokens" not in _usage({}, 10, 0.0, None)


def test_invalid_markers_are_flagged_not_shown(service: RagService) -> None:
    retrieval = service.retrieve("How long does the lighthouse lamp run?", small())
    labels = [p.label for p in retrieval.packing.passages]
    citations, invalid = cite(f"It runs 36 hours [{labels[0]}] [99].", retrieval.packing.passages)
    assert [c.label for c in citations] == [labels[0]] and invalid == [99]
    assert not citations[0].inferred


def test_cli_ask_json(settings: Settings, service: RagService, corpus: Path,
                      tmp_path: Path, llm_server: llamacpp.RunningServer) -> None:
    from ingest.pipeline import ingest

    data = tmp_path / "data"
    ingest(settings.model_copy(update={"data_dir": data}), [corpus / "bikes.md"],
           embedder=service.runtime.embedder())
    env = {**os.environ, "RAG_DATA_DIR": str(data), "RAG_LLM__URL": llm_server.url}
    r = subprocess.run([sys.executable, "-m", "app.cli", "ask", "What does a bike day pass cost?",
                        "--budget", "2048", "--json"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert set(out) >= {"answer", "citations", "ledger", "usage"}
    assert out["answer"] and out["ledger"]["budget"]["requested"] == 2048
    assert all({"label", "source", "page", "text"} <= set(c) for c in out["citations"])

    down = {**env, "RAG_LLM__URL": f"http://127.0.0.1:{free_port()}/v1", "RAG_LLM__RETRIES": "0"}
    r = subprocess.run([sys.executable, "-m", "app.cli", "ask", "What does it cost?"],
                       capture_output=True, text=True, cwd=ROOT, env=down, timeout=300)
    assert r.returncode == 3
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: the LLM server is not reachable at http://127.0.0.1:")
    assert "Traceback" not in r.stderr


def test_a_grown_conversation_keeps_the_previous_contexts_prefix(counter: Any) -> None:
    from retrieval.context import keep_prefix as _keep_prefix
    from retrieval.packer import Packing, Passage, header_for, render

    passages = []
    for label in (1, 2, 3):
        p = Passage(label, f"d{label}", f"/docs/{label}.md", "", None, 0, 0, 0,
                    f"Passage number {label} talks about lamps. " * 20, 0, 0.5, label - 1)
        p.header = header_for(label, p)
        p.tokens = counter.count(p.header + p.text + "\n\n")
        passages.append(p)
    used = counter.count(render(passages))
    packing = Packing(passages, [], used, used, "document", "retrieve", counter.name)
    assert _keep_prefix(packing, used, counter) is packing  # still fits: unchanged
    trimmed = _keep_prefix(packing, used - 5, counter)
    assert trimmed is not None
    assert [p.label for p in trimmed.passages] == [1, 2]
    assert render(passages).startswith(trimmed.context)
    assert trimmed.used_tokens == counter.count(trimmed.context) <= used - 5
    assert [(x.reason, x.document_id) for x in trimmed.left_out] == [("budget", "d3")]
    assert _keep_prefix(packing, 10, counter) is None  # not even one passage fits
