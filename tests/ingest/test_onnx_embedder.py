"""The ONNX backend against torch, both on the shipped MiniLM weights and real runtimes: the
fp32 export gives torch's vectors, the int8 vectors agree with fp32 (the quality gate), long
texts are windowed alike, the query path never imports torch (nor the LLM client or the ingest
pipeline), a store refuses the other backend's query vectors, and a missing onnxruntime falls
back to torch in one line."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_helpers import rag_env

from core.errors import SettingsError
from core.settings import Settings, load_settings
from ingest.embedder import TorchEmbedder, WindowedEmbedder, model_path
from ingest.onnx_embedder import OnnxEmbedder

SUBJECTS = ["The committee", "A small bakery", "Our quarterly revenue", "The river", "Each sensor",
            "The new library", "Her thesis", "The protocol", "A cold front", "The orchestra"]
VERBS = ["reported", "doubled", "flooded", "measured", "rejected", "opened", "described",
         "postponed", "replaced", "recorded"]
OBJECTS = ["the budget for 2024", "a loss of 3.2 million euros", "the northern district",
           "temperatures below freezing", "the merger proposal", "twelve new reading rooms",
           "protein folding in yeast", "TLS 1.3 handshakes", "heavy snow in the Alps",
           "Mahler's fifth symphony"]
TAILS = ["after a long debate.", "despite the warnings.", "on Tuesday morning.",
         "for the first time since 1998.", "according to the minutes.", "", "(see table 4).",
         "while the city slept.", "with little fanfare.", "— nobody expected it."]


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(filter(None, [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                                   rng.choice(TAILS)])) for _ in range(n)]


def chunks(n: int, seed: int = 11) -> list[str]:
    """Chunk-like texts: 1 to 40 sentences, so some run past the 256 word pieces."""
    rng = random.Random(seed)
    pool = sentences(2000, seed)
    return [" ".join(rng.sample(pool, rng.randint(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def torch_embedder() -> TorchEmbedder:
    settings = load_settings().embedding.model_copy(update={"backend": "torch"})
    return TorchEmbedder(settings, model_path(settings))


GATE_SENTENCES, GATE_CHUNKS = 200, 100


@pytest.fixture(scope="module")
def fp32() -> OnnxEmbedder:
    settings = load_settings().embedding.model_copy(update={"onnx_int8": False})
    return OnnxEmbedder(settings, model_path(settings))


@pytest.fixture(scope="module")
def reference(fp32: OnnxEmbedder) -> dict[str, np.ndarray]:
    """fp32 vectors of the quality gate's texts, made once for every backend compared here.
    They come from the fp32 ONNX export, which gives sentence-transformers' torch vectors to
    float precision (test_fp32_export_reproduces_sentence_transformers) in ~0.6x the time.
    `sentences(n)` and `chunks(n)` of a smaller n are prefixes of these lists."""
    return {"sentences": fp32.embed(sentences(GATE_SENTENCES)),
            "chunks": fp32.embed(chunks(GATE_CHUNKS))}


def reference_of(reference: dict[str, np.ndarray], n_sentences: int, n_chunks: int) -> np.ndarray:
    return np.concatenate([reference["sentences"][:n_sentences], reference["chunks"][:n_chunks]])


def test_the_gates_smaller_text_sets_are_prefixes_of_the_full_ones() -> None:
    assert sentences(60) == sentences(GATE_SENTENCES)[:60]
    assert chunks(30) == chunks(GATE_CHUNKS)[:30]


def test_default_backend_is_onnx_int8(embedder: Any) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.signature.startswith("onnx-int8/")
    assert embedder.dim == 384


def test_int8_vectors_agree_with_fp32(embedder: Any, reference: dict[str, np.ndarray]) -> None:
    texts = sentences(GATE_SENTENCES) + chunks(GATE_CHUNKS)
    ours = embedder.embed(texts)
    theirs = reference_of(reference, GATE_SENTENCES, GATE_CHUNKS)
    assert ours.shape == theirs.shape == (300, 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.mean() >= 0.99, cosine.mean()
    assert cosine.min() >= 0.95, cosine.min()
    # The nearest neighbour of each sentence among the others is mostly the same one.
    own = np.argsort(-(ours[:200] @ ours[:200].T), axis=1)[:, 1]
    ref = np.argsort(-(theirs[:200] @ theirs[:200].T), axis=1)[:, 1]
    assert (own == ref).mean() >= 0.8


def test_fp32_export_reproduces_sentence_transformers(torch_embedder: TorchEmbedder,
                                                     fp32: OnnxEmbedder,
                                                     reference: dict[str, np.ndarray]) -> None:
    """Tokenizer, truncation, mean pooling and normalisation in numpy are sentence-transformers'
    own: with fp32 weights the vectors are the same to float precision."""
    odd = ["  padded with spaces  ", "ünïcödé naïve café", "x"]
    ours = np.concatenate([reference_of(reference, 20, 10), fp32.embed(odd)])
    theirs = torch_embedder.embed(sentences(20) + chunks(10) + odd)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() > 0.9999, cosine.min()
    assert fp32.signature.startswith("onnx-fp32/")


def test_long_texts_are_windowed_alike(embedder: Any, torch_embedder: TorchEmbedder) -> None:
    long = [t for t in chunks(60) if len(t) > 2000][:10]
    assert long
    for text in long:
        windows = embedder.windows(text)
        assert len(windows) > 1
        assert windows == torch_embedder.windows(text)


def test_a_vector_does_not_depend_on_its_batch(embedder: Any) -> None:
    """The same text gets the same vector alone or among others (and in input order)."""
    texts = chunks(30)
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts[:5]])
    assert np.allclose(together[:5], alone, atol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_query_vector_is_the_batch_paths(embedder: Any) -> None:
    """embed_query's one-run path gives exactly what embed gives the same text, short or
    long enough to be windowed."""
    for text in [*sentences(3), " ".join(sentences(60))]:
        assert embedder.embed_query(text) == embedder.embed([text])[0].tolist()


def test_query_path_imports_no_torch_llm_client_or_pipeline(tmp_path: Path, make_settings: Any,
                                                            embedder: Any) -> None:
    from ingest.pipeline import ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rivers.md").write_text("# Rivers\n\n" + " ".join(sentences(40)))
    settings: Settings = make_settings(tmp_path / "data")
    assert ingest(settings, [docs], embedder=embedder).count("new") == 1
    env = rag_env(settings)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app.cli", "--data-dir", str(settings.data_dir),
         "retrieve", "What flooded the northern district?", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = json.loads(proc.stdout)
    assert "rivers.md" in json.dumps(hits)
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    assert "onnxruntime" in modules
    assert not {m for m in modules if m.split(".")[0] in QUERY_PATH_NEVER}
    assert not modules & {"ingest.pipeline", "ingest.loaders", "app.cli_eval", "app.llm"}
    assert "rich" not in modules  # --json prints with print(): the consoles are never made


# What `rag retrieve` has no use for: the model's training stack, the LLM client (the
# evaluation's), the MCP SDK (`rag mcp`'s).
QUERY_PATH_NEVER = ("torch", "sentence_transformers", "transformers", "openai", "mcp")


def test_store_refuses_another_backends_queries(tmp_path: Path, make_settings: Any, embedder: Any,
                                               torch_embedder: TorchEmbedder) -> None:
    from ingest.pipeline import ingest
    from ingest.store import open_store
    from ingest.tokenizer import load_tokenizer
    from retrieval.service import Retriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(" ".join(sentences(30)))
    settings: Settings = make_settings(tmp_path / "data")
    ingest(settings, [docs], embedder=embedder)
    store = open_store(settings)
    try:
        ok = Retriever(settings, store, embedder, load_tokenizer(settings.tokenizer.path))
        assert ok._documents()
        other = Retriever(settings, store, torch_embedder, load_tokenizer(settings.tokenizer.path))
        with pytest.raises(SettingsError) as err:
            other._documents()
    finally:
        store.close()
    message = str(err.value)
    assert "\n" not in message
    assert "onnx-int8" in message and "torch-fp32" in message
    assert "embedding.backend=onnx" in message and "re-ingest" in message


def test_backend_is_part_of_the_version_signature(make_settings: Any, tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor

    def signature(**embedding: Any) -> str:
        settings = make_settings(tmp_path / "data", embedding=embedding)
        return Ingestor(settings, store=None, embedder=object()).signature()  # type: ignore[arg-type]

    assert len({signature(backend="onnx"), signature(backend="torch"),
                signature(backend="onnx", onnx_int8=False)}) == 3


def test_missing_onnxruntime_falls_back_to_torch_in_one_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import importlib.util

    from ingest import embedder as module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with caplog.at_level(logging.WARNING, logger="ingest.embedder"):
        chosen = module.Embedder(load_settings().embedding)
    assert isinstance(chosen, TorchEmbedder) and isinstance(chosen, WindowedEmbedder)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "pip install 'rag-long-context[onnx]'" in lines[0]
    assert module.backend_label(load_settings().embedding) == "torch-fp32"


def test_missing_openvino_falls_back_to_onnx_in_one_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from ingest import embedder as module

    settings = load_settings(embedding={"backend": "openvino"}).embedding
    monkeypatch.setitem(sys.modules, "openvino", None)  # how Python marks a module unimportable
    with caplog.at_level(logging.WARNING, logger="ingest.embedder"):
        chosen = module.Embedder(settings)
    assert type(chosen) is OnnxEmbedder and chosen.signature.startswith("onnx-int8/")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "pip install 'rag-long-context[openvino]'" in lines[0]
    assert module.backend_label(settings) == "onnx-int8"


@pytest.mark.slow
def test_openvino_int8_agrees_with_fp32(reference: dict[str, np.ndarray]) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from ingest.embedder import Embedder, backend_label
    from ingest.openvino_embedder import OpenVinoEmbedder

    settings = load_settings(embedding={"backend": "openvino"}).embedding
    ov = Embedder(settings)
    assert isinstance(ov, OpenVinoEmbedder) and ov.dim == 384
    assert ov.signature.startswith("openvino-int8/") and backend_label(settings) == "openvino-int8"
    texts = sentences(60) + chunks(30)
    ours = ov.embed(texts)
    cosine = (ours * reference_of(reference, 60, 30)).sum(axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.95, (cosine.mean(), cosine.min())
    # A vector does not depend on its batch (to the last bits: OpenVINO splits sums by thread).
    assert np.allclose(ov.embed(texts[:3]), ours[:3], atol=1e-6)


def test_repeated_questions_reuse_their_vectors(embedder: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A question asked again is not run through the model again, while it is among the
    last QUERY_CACHE asked; its vector is the same, and a caller's changes to it stay its own."""
    runs: list[int] = []
    infer = embedder._infer

    def counted(feed: Any) -> Any:
        runs.append(1)
        return infer(feed)

    monkeypatch.setattr(embedder, "_infer", counted)
    monkeypatch.setattr(embedder, "query_session", None)  # another test may have opened one
    monkeypatch.setattr(embedder, "QUERY_CACHE", 2)
    first, second, third = sentences(3, seed=29)
    vector = embedder.embed_query(first)
    assert len(runs) == 1
    vector[0] += 1.0
    assert embedder.embed_query(first) == embedder.embed([first])[0].tolist()
    assert len(runs) == 2  # the embed() call only
    embedder.embed_query(second)
    embedder.embed_query(first)  # the most recent again, so `second` goes first
    embedder.embed_query(third)
    assert len(runs) == 4
    embedder.embed_query(first)
    assert len(runs) == 4
    embedder.embed_query(second)
    assert len(runs) == 5


class Runs:
    """A session that counts its runs (the real one does them)."""

    def __init__(self, session: Any):
        self.session, self.runs = session, 0

    def run(self, *args: Any) -> Any:
        self.runs += 1
        return self.session.run(*args)


def test_a_runtime_that_answers_many_questions_uses_idle_cores_only(
        tmp_path: Path, make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """warm_embedder() (the API's, MCP's) opens a one-thread session for questions and one of
    `query_threads` for when that many cores are idle; whichever runs, the vectors are the
    ingest session's bit for bit, and `rag retrieve`'s plain load opens neither."""
    import ingest.onnx_embedder as onnx_embedder
    from app.runtime import Runtime

    with Runtime(make_settings(tmp_path / "data")) as rt:
        loaded = rt.embedder()
        assert loaded.query_session is None and loaded.burst_session is None
        rt.warm_embedder()
        assert rt.embedder() is loaded and loaded.query_session is not None
        assert loaded.query_session.get_session_options().intra_op_num_threads == 1
        cores = onnx_embedder.usable_cores()
        if cores < 2:
            pytest.skip("one core: no session of two threads is opened")
        assert loaded.burst_threads == 2 == \
            loaded.burst_session.get_session_options().intra_op_num_threads
        one, burst = Runs(loaded.query_session), Runs(loaded.burst_session)
        monkeypatch.setattr(loaded, "query_session", one)
        monkeypatch.setattr(loaded, "burst_session", burst)
        texts = sentences(12, seed=31)
        for idle in (0, cores - 1):  # every core busy; every core but the caller's idle
            monkeypatch.setattr(onnx_embedder, "idle_cores", lambda n, idle=idle: idle)
            loaded._queries.clear()
            for text in texts:
                assert loaded.embed_query(text) == loaded.embed([text])[0].tolist()
        assert one.runs == burst.runs == len(texts)


def test_query_threads_1_opens_one_session(tmp_path: Path, make_settings: Any) -> None:
    from app.runtime import Runtime

    with Runtime(make_settings(tmp_path / "data", embedding={"query_threads": 1})) as rt:
        rt.warm_embedder()
        assert rt.embedder().query_session is not None and rt.embedder().burst_session is None


def test_idle_cores_reads_the_runnable_threads() -> None:
    """The kernel's count of runnable threads, the caller among them: never every core idle."""
    from ingest.onnx_embedder import idle_cores, runnable_threads, usable_cores

    assert runnable_threads("0.38 1.14 1.16 2/67 12345\n") == 2
    assert runnable_threads("12.00 9.50 8.25 17/412 99\n") == 17
    cores = usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    if Path("/proc/loadavg").is_file():
        assert idle_cores(cores) <= cores - 1
