"""`rag eval` on small real corpora: real Qdrant Edge stores, the shipped MiniLM and Llama 3
tokenizer; the command itself in a subprocess for --compare and Ctrl-C."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures_eval import write_eval_corpus, write_keyword_corpus

from app.evaluation import EvalOptions, Evaluation, load_run, save_run, without_model
from app.evaluation.corpus import (
    EmptyCollectionError,
    TempCollection,
    sweep_stale,
    temp_collections,
)
from app.evaluation.probes import answerable, insert_at, masked_probe, needle_facts
from core.choices import ContextMode, Layout
from core.errors import RagError
from core.settings import Settings
from ingest.payload import manifest
from ingest.store import open_store

ROOT = Path(__file__).resolve().parents[2]
NONE_FITS = 1100  # minus the 1,024-token answer reserve and the prompt: no room for passages
ALL_FIT = 8192  # the whole fixture corpus (about 1,500 tokens) and more


def _evaluate(settings: Settings, embedder: Any, **options: Any) -> Any:
    store = open_store(settings)
    try:
        before = sorted((d.document_id, d.doc_hash) for d in manifest(store))
        run = Evaluation(settings, store, embedder, without_model(settings)).run(
            EvalOptions(**options))
        after = sorted((d.document_id, d.doc_hash) for d in manifest(store))
    finally:
        store.close()
    assert before == after, "the evaluated collection was written"
    return run


def _cell(run: Any, budget: int, mode: str | None = None) -> dict[str, Any]:
    return next(c for c in run.cells if c["budget"] == budget
                and (mode is None or c["mode"] == mode))


def test_needles_found_when_the_corpus_fits_and_missed_when_nothing_does(
        tmp_path: Path, settings: Settings, embedder: Any, ingest_paths: Any) -> None:
    ingest_paths(write_eval_corpus(tmp_path / "docs"))
    run = _evaluate(settings, embedder, probes=6, kinds=("needle",), budgets=(NONE_FITS, ALL_FIT),
                    layouts=(Layout.DOCUMENT, Layout.EDGES))
    assert [p.kind for p in run.probes] == ["needle"] * 6
    assert [p.depth for p in run.probes][0] == 0.0 and run.probes[-1].depth == 100.0
    for layout in ("document", "edges"):
        fits = [m for m in run.measurements if m.budget == ALL_FIT and m.layout == layout]
        assert len(fits) == 6 and all(m.found for m in fits)
    tight = [m for m in run.measurements if m.budget == NONE_FITS]
    assert tight and not any(m.found for m in tight) and all(m.available == 0 for m in tight)
    assert _cell(run, ALL_FIT)["recall"] == 1.0 and _cell(run, NONE_FITS)["recall"] == 0.0
    assert run.recommendation["budget"] == ALL_FIT
    assert run.notes == ["1100 left no room for passages: the answer reserve (1,024 tokens, "
                         "retrieval.answer_reserve) and the prompt take it all"]
    assert temp_collections(settings) == [] and run.temp_collection.startswith("eval-tmp-")
    assert not (settings.data_dir / "qdrant" / run.temp_collection).exists()


def _whole_document_costs(settings: Settings, embedder: Any, copies: dict[str, str],
                          folder: Path, question: str) -> tuple[list[tuple[str, int]], int]:
    """The probe copies ingested as the evaluation ingests them, and what each costs the
    whole-document packer, in the order it takes them: [(file name, tokens)] by source, and
    the prompt's tokens. The ledger gives each passage's tokens with its exact header; the
    packer decides with the widest one ([999]), so that is put back."""
    from ingest.pipeline import ingest
    from retrieval.packer import header_for
    from retrieval.service import RetrieveOptions, Retriever

    folder.mkdir()
    for name, text in copies.items():
        (folder / name).write_text(text, encoding="utf-8")
    served = without_model(settings)
    store = open_store(settings)
    try:
        ingest(settings, [folder], store=store, embedder=embedder)
        result = Retriever(settings, store, embedder, served.counter).retrieve(
            question, RetrieveOptions(budget_tokens=10**6, context_mode=ContextMode.FULL))
    finally:
        store.close()
    assert result.packing.mode == "full" and not result.packing.left_out
    cost: dict[str, int] = {}
    for p in result.packing.passages:
        exact, widest = served.counter.count_many([p.header, header_for(999, p)])
        name = p.source.rsplit("/", 1)[-1]
        cost[name] = cost.get(name, 0) + p.tokens - exact + widest
    return sorted(cost.items()), result.budget.prompt_tokens


def _taken_whole(costs: list[tuple[str, int]], available: int) -> set[str]:
    """The documents the whole-document packer takes: in order, each that still fits."""
    taken, used = set(), 0
    for name, tokens in costs:
        if used + tokens <= available:
            taken.add(name)
            used += tokens
    return taken


def test_a_budget_holding_part_of_the_corpus_misses_the_needles_of_the_documents_left_out(
        tmp_path: Path, make_settings: Any, embedder: Any) -> None:
    """Whole documents as many as fit (context_mode full): at a budget that holds about half
    of the copies, exactly the needles in the copies the packer leaves out are missed."""
    from ingest.pipeline import ingest

    retrieval = {"context_mode": "full", "answer_reserve": 64}
    settings = make_settings(tmp_path / "data", retrieval=retrieval)
    ingest(settings, write_eval_corpus(tmp_path / "docs"), embedder=embedder)
    store = open_store(settings)
    try:
        entries = sorted(manifest(store), key=lambda d: (d.source, d.document_id))
        made = Evaluation(settings, store, embedder, without_model(settings)).make_probes(
            entries, EvalOptions(probes=6, kinds=("needle",)), random.Random(0))
    finally:
        store.close()
    costs, prompt = _whole_document_costs(
        make_settings(tmp_path / "copies-data", retrieval=retrieval), embedder, made.copies,
        tmp_path / "copies", made.needles[0].question)
    partial = 64 + prompt + sum(t for _, t in costs) // 2
    run = _evaluate(settings, embedder, probes=6, kinds=("needle",), budgets=(partial, ALL_FIT),
                    layouts=(Layout.DOCUMENT, Layout.EDGES))
    assert run.probes == made.needles  # the copies measured are the ones costed
    assert sorted({p.document for p in run.probes}) == [n for n, _ in costs if "needle" in n]
    missed = set()
    for m in run.measurements:
        probe = run.probes[m.probe]
        assert m.packed == "full"
        if m.budget == ALL_FIT:
            assert m.found, probe
            continue
        expected = probe.document in _taken_whole(costs, m.available)
        assert m.found == expected, (probe.document, probe.depth, m.available, costs)
        if not expected:
            missed.add(probe.document)
    assert 0 < len(missed) < len(run.probes)  # the budget holds part of the needles
    assert 0 < _cell(run, partial)["recall"] < 1.0 == _cell(run, ALL_FIT)["recall"]
    assert temp_collections(settings) == []


def test_passage_probes_are_distinct_stored_sentences_masked(
        tmp_path: Path, settings: Settings, embedder: Any, ingest_paths: Any) -> None:
    ingest_paths(write_eval_corpus(tmp_path / "docs"))
    run = _evaluate(settings, embedder, probes=5, kinds=("passage",), budgets=(ALL_FIT,),
                    layouts=(Layout.DOCUMENT,), llm_questions=False)
    texts = {p.read_text() for p in (tmp_path / "docs").iterdir()}
    assert len({p.evidence for p in run.probes}) == 5
    assert len({p.document for p in run.probes}) >= 4  # spread over documents
    for p in run.probes:
        assert p.made_by == "mask" and "____" in p.question and p.answer not in p.question.lower()
        assert any(" ".join(p.evidence.split()) in " ".join(t.split()) for t in texts)
    assert _cell(run, ALL_FIT)["recall"] == 1.0


def test_a_missing_or_empty_collection_and_bad_options_are_one_line_errors(
        tmp_path: Path, settings: Settings, embedder: Any) -> None:
    with pytest.raises(EmptyCollectionError, match="collection 'documents' does not exist"):
        _evaluate(settings, embedder, probes=2, budgets=(ALL_FIT,))
    store = open_store(settings)
    store.ensure_collection(embedder.dim)
    store.close()
    with pytest.raises(EmptyCollectionError, match="collection 'documents' is empty"):
        _evaluate(settings, embedder, probes=2, budgets=(ALL_FIT,))
    with pytest.raises(RagError, match="probes"):
        EvalOptions(probes=0)
    assert temp_collections(settings) == []
    # Refused before the embedder loads or the served model starts (no --no-llm here); run
    # away from the data dir, so the collection is found empty only through --data-dir.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(_rag(settings.data_dir, "eval"), cwd=elsewhere, env=_env(settings),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert r.stderr.splitlines() == ["error: collection 'documents' is empty: ingest "
                                     "documents into it first, then evaluate it"]


def test_a_collection_left_by_a_killed_run_is_swept(settings: Settings) -> None:
    temp = TempCollection(settings).__enter__()
    assert temp.store is not None
    temp.store.ensure_collection(8)
    name = temp.name
    assert temp_collections(settings) == [name]
    assert sweep_stale(settings) == []  # still owned: left alone
    temp.store.close()  # the owner dies without removing it
    assert sweep_stale(settings) == [name] and temp_collections(settings) == []


def test_needles_and_questions_checks() -> None:
    import random

    facts = needle_facts(random.Random(1), 20)
    assert len({f[0] for f in facts}) == 20
    sentence, question, answer = facts[0]
    assert answer in sentence and answer not in question
    text, depth = insert_at("One. Two three. Four five six.", sentence, 50)
    assert sentence in text and text.startswith("One. Two three.") and 0 < depth < 100
    s = "The museum holds 212 ship models, the oldest a herring drifter carved in 1874."
    assert answerable("How many ship models does the museum hold?", "212", s)
    assert not answerable("The museum holds 212 ship models, the oldest a herring drifter "
                          "carved in what year?", "1874", s)  # a copy of the sentence
    assert not answerable("When was the drifter carved?", "1901", s)  # not in the sentence


def test_masking_hides_the_rarest_words() -> None:
    from collections import Counter

    from app.evaluation.corpus import StoredDocument
    from ingest.payload import ChunkPayload

    doc = StoredDocument(ChunkPayload(document_id="d", source="/x.txt", chunk_index=0), ())
    df = Counter({"harbour": 9, "museum": 9, "lindqvist": 1, "pilot": 3, "retired": 4, "gave": 7,
                  "collection": 8})
    p = masked_probe("The retired pilot Lindqvist gave the harbour museum her collection.",
                     doc, 0.0, df)
    assert "Lindqvist" not in p.question and "pilot" not in p.question
    assert "harbour" in p.question and p.answer == "lindqvist"


def _rag(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "--data-dir", str(data_dir), *args]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"PYTHONPATH": str(ROOT), "RAG_CHUNKING__SIZE": str(settings.chunking.size),
                "RAG_CHUNKING__OVERLAP": str(settings.chunking.overlap),
                "RAG_EMBEDDING__THREADS": "1", **extra})
    return env


@pytest.mark.slow
def test_rag_eval_compare_reports_the_drop_of_dense_search(
        tmp_path: Path, settings: Settings, embedder: Any, ingest_paths: Any) -> None:
    """Made-up names are told apart by keywords, barely by a dense embedding: a hybrid run,
    then `rag eval --compare` after search_mode=dense."""
    import json

    from rich.console import Console

    from app.cli_eval import print_comparison, print_run
    from app.evaluation import EvalRun

    ingest_paths(write_keyword_corpus(tmp_path / "docs"))
    first = _evaluate(settings, embedder, probes=8, budgets=(1300, 1500),
                      layouts=(Layout.DOCUMENT,), llm_questions=False)
    save_run(settings, first)
    r = subprocess.run(
        _rag(settings.data_dir, "eval", "--no-llm", "--probes", "8", "--budgets", "1300,1500",
             "--layouts", "document", "--compare", first.id[:12], "--json"),
        cwd=tmp_path, env=_env(settings, RAG_RETRIEVAL__SEARCH_MODE="dense"),
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = json.loads(r.stdout)
    result = out["comparison"]
    assert result["old"] == first.id and result["same_probes"]
    assert result["drops"] >= 1 and result["verdict"].startswith("recall dropped")
    assert {"setting": "retrieval.search_mode", "old": "hybrid", "new": "dense"} in \
        result["settings"]
    assert not result["corpus"]["changed"]
    assert load_run(settings, "last").id == out["run"]["id"]  # saved
    console = Console(record=True, width=200)
    print_run(console, EvalRun.from_dict(out["run"]))
    print_comparison(console, result)
    text = console.export_text()
    assert "recommended: budget" in text and "recall by budget" in text
    assert f"compared with {first.id}: recall dropped" in text
    assert "setting retrieval.search_mode: hybrid -> dense" in text
    bad = subprocess.run(_rag(settings.data_dir, "eval", "--budgets", "4q"), cwd=tmp_path,
                         env=_env(settings), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: budgets: '4q' is not a token count (e.g. 4k, 16384)"]


@pytest.mark.slow
def test_ctrl_c_leaves_no_evaluation_collection(tmp_path: Path, settings: Settings,
                                                ingest_paths: Any) -> None:
    ingest_paths(write_eval_corpus(tmp_path / "docs"))
    proc = subprocess.Popen(
        _rag(settings.data_dir, "eval", "--no-llm", "--probes", "200", "--budgets",
             "2k,4k,8k,16k", "--modes", "hybrid,dense,keyword"),
        cwd=tmp_path, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not temp_collections(settings) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_collections(settings), "the evaluation collection never appeared"
    time.sleep(1.0)  # mid-run: ingesting the copies or retrieving
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert temp_collections(settings) == []
    assert not list(settings.data_dir.glob("eval/*.json"))  # no half run saved
