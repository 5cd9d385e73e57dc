"""The evaluation run: probes from the corpus, a temporary collection for the needles, and
every probe retrieved (and, with answers, answered) at each budget × layout × mode."""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.citations import cite
from app.evaluation.corpus import (
    StoredDocument,
    TempCollection,
    check_corpus,
    corpus_fingerprint,
    read_document,
    retrieval_settings,
    settings_fingerprint,
    sweep_stale,
)
from app.evaluation.options import EvalOptions, short_tokens
from app.evaluation.probes import (
    Probe,
    contains,
    document_frequency,
    llm_probe,
    masked_probe,
    needle_copies,
    passage_sentences,
)
from app.evaluation.progress import EvalProgress
from app.evaluation.runs import EvalRun, Measurement
from app.llm import LLMClient, LLMError
from app.runtime import LockedEmbedder
from app.served_model import ServedModel
from core.choices import Layout, SearchMode
from core.errors import RagError
from core.settings import Settings
from ingest.payload import ChunkPayload, manifest
from ingest.pipeline import Progress as IngestProgress
from ingest.pipeline import ingest
from ingest.store import Store
from ingest.tokenizer import load_tokenizer
from retrieval.prompt import build_messages
from retrieval.service import Retrieval, RetrieveOptions, Retriever
from serving.served import Served

HAYSTACK_BUDGETS = 2  # the evaluation collection holds this many largest budgets of text
ANSWER_TOKENS = 128


@dataclass
class _Probes:
    needles: list[Probe]
    passages: list[Probe]
    copies: dict[str, str]  # file name → text for the evaluation collection
    haystack_tokens: int


class Evaluation:
    """One run over the collection `store` of `settings`, read only. `lock` serialises
    store and embedder access with other threads (the API's runtime lock)."""

    def __init__(self, settings: Settings, store: Store, embedder: Any, served: Served,
                 llm: LLMClient | None = None, lock: AbstractContextManager[Any] | None = None,
                 progress: EvalProgress | None = None):
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.served = served
        self.llm = llm
        self.lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self.progress = progress or EvalProgress()
        self.notes: list[str] = []

    def run(self, options: EvalOptions) -> EvalRun:
        if options.answers and self.llm is None:
            raise RagError("answers need the served model: start it, or leave out --answers")
        started = time.perf_counter()
        rng = random.Random(options.seed)
        with self.lock:
            check_corpus(self.store, self.settings.store.collection)
            removed = sweep_stale(self.settings)
            entries = sorted(manifest(self.store), key=lambda d: (d.source, d.document_id))
        if removed:
            self.notes.append(f"removed {len(removed)} evaluation collection(s) a stopped run "
                              "left behind")
        probes = self.make_probes(entries, options, rng)
        modes = options.modes or (self.settings.retrieval.search_mode,)
        measurements: list[Measurement] = []
        with TempCollection(self.settings) as temp:
            if probes.needles:
                self.ingest_copies(temp, probes.copies)
            cells = len(modes) * len(options.budgets) * len(options.layouts)
            self.progress.stage("answer" if options.answers else "retrieve",
                                len(probes.needles + probes.passages) * cells)
            if probes.needles:
                temp_retriever = self._retriever(temp.settings, temp.store)
                measurements += self.measure(temp_retriever, probes.needles, 0, options, modes)
            measurements += self.measure(self._retriever(self.settings, self.store),
                                         probes.passages, len(probes.needles), options, modes)
            temp_name = temp.name
        self.note_budgets(options, measurements)
        return EvalRun(
            id=datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            collection=self.settings.store.collection, options=options.to_dict(),
            modes=[str(m) for m in modes], probes=probes.needles + probes.passages,
            measurements=measurements, corpus=corpus_fingerprint(entries),
            settings=retrieval_settings(self.settings),
            settings_hash=settings_fingerprint(retrieval_settings(self.settings)),
            model=self.served.model, context_window=self.served.context_window,
            haystack_tokens=probes.haystack_tokens, temp_collection=temp_name,
            seconds=round(time.perf_counter() - started, 2), notes=self.notes)

    def note_budgets(self, options: EvalOptions, measurements: list[Measurement]) -> None:
        """Says which budgets held no passage at all, and which were not answered."""
        empty = sorted({m.budget for m in measurements}
                       - {m.budget for m in measurements if m.available > 0})
        if empty:
            self.notes.append(
                f"{', '.join(map(short_tokens, empty))} left no room for passages: the answer "
                f"reserve ({self.settings.retrieval.answer_reserve:,} tokens, "
                "retrieval.answer_reserve) and the prompt take it all")
        over = [b for b in options.budgets if b > self.served.context_window]
        if options.answers and over:
            self.notes.append(f"budgets over the model's {self.served.context_window:,}-token "
                              f"window ({', '.join(map(short_tokens, over))}) were not answered")

    # -- probes ---------------------------------------------------------------------------
    def make_probes(self, entries: list[ChunkPayload], options: EvalOptions,
                    rng: random.Random) -> _Probes:
        """Needles in copies of randomly chosen documents, with other documents around them
        up to HAYSTACK_BUDGETS of the largest budget; passages from the same documents."""
        order = rng.sample(entries, len(entries))
        window = self.served.context_window
        cap = HAYSTACK_BUDGETS * max(min(b, window) for b in options.budgets)
        n = options.probes
        chosen: list[ChunkPayload] = []
        tokens = 0
        for e in order:
            if len(chosen) >= n and tokens >= cap:
                break
            chosen.append(e)
            tokens += int(e.doc_tokens)
        self.progress.stage("read", len(chosen))
        docs: list[StoredDocument] = []
        for e in chosen:
            with self.lock:
                docs.append(read_document(self.store, e))
            self.progress.advance()
        docs = [d for d in docs if d.chunks]
        needles: list[Probe] = []
        copies: dict[str, str] = {}
        if "needle" in options.kinds:
            carriers = docs[:n]
            copies, needles = needle_copies(carriers, n, rng)
            for i, d in enumerate(docs[len(carriers):]):
                copies[f"other-{i:05d}.txt"] = d.text
        passages = (self.passage_probes(docs, n, rng, options.llm_questions)
                    if "passage" in options.kinds else [])
        return _Probes(needles, passages, copies, tokens)

    def passage_probes(self, docs: list[StoredDocument], n: int, rng: random.Random,
                       llm_questions: bool) -> list[Probe]:
        """Distinctive sentences asked about: by the served model's question when it passes
        the check, else masked."""
        picked = passage_sentences(docs, n, rng)
        df = document_frequency(docs)
        use_llm = self.llm is not None and llm_questions
        self.progress.stage("questions", len(picked))
        probes = []
        for sentence, doc, depth in picked:
            probe = llm_probe(sentence, doc, depth, self._ask) if use_llm else None
            probes.append(probe or masked_probe(sentence, doc, depth, df))
            self.progress.advance()
        if use_llm:
            masked = sum(p.made_by == "mask" for p in probes)
            if masked:
                self.notes.append(f"{masked} of {len(probes)} questions the model wrote failed "
                                  "the check (answer in the sentence, not a copy): masked instead")
        return probes

    def _ask(self, prompt: str) -> str:
        assert self.llm is not None
        text, _ = self.llm.chat([{"role": "user", "content": prompt}], max_tokens=96,
                                temperature=0.0)
        return text

    def ingest_copies(self, temp: TempCollection, copies: dict[str, str]) -> None:
        """The probe copies into the evaluation collection, through the real pipeline."""
        self.progress.stage("ingest", len(copies))
        with tempfile.TemporaryDirectory(prefix="rag-eval-") as folder:
            for name, text in copies.items():
                (Path(folder) / name).write_text(text, encoding="utf-8")
            report = ingest(temp.settings, [Path(folder)], store=temp.store,
                            embedder=LockedEmbedder(self.embedder, self.lock),
                            progress=_Files(self.progress))
        if report.failed:
            raise RagError(f"the evaluation copies did not ingest: {report.failed[0].reason}")

    # -- measurements ---------------------------------------------------------------------
    def _retriever(self, settings: Settings, store: Store | None) -> Retriever:
        assert store is not None
        return Retriever(settings, store, self.embedder, self.served.counter,
                         chat_format=self.served.chat_format)

    def measure(self, retriever: Retriever, probes: list[Probe], first: int,
                options: EvalOptions, modes: tuple[SearchMode, ...]) -> list[Measurement]:
        out: list[Measurement] = []
        largest = max(options.budgets)
        for i, probe in enumerate(probes, start=first):
            for mode in modes:
                with self.lock:
                    rank = evidence_rank(retriever, probe, mode, largest)
                for budget in options.budgets:
                    for layout in options.layouts:
                        out.append(self.cell(retriever, probe, i, budget, layout, mode, rank,
                                             options.answers))
                        self.progress.advance()
        return out

    def cell(self, retriever: Retriever, probe: Probe, index: int, budget: int, layout: Layout,
             mode: SearchMode, rank: int | None, answer: bool) -> Measurement:
        opts = RetrieveOptions(budget_tokens=budget, layout=layout, search_mode=mode)
        with self.lock:
            result = retriever.retrieve(probe.question, opts, self.served.context_window)
        m = Measurement(index, budget, str(layout), str(mode),
                        contains(result.packing.context, probe.evidence), rank,
                        result.packing.used_tokens, result.budget.available,
                        round(result.seconds, 5), result.packing.mode)
        if answer and budget <= self.served.context_window:
            m = self.answer(probe, result, m)
        return m

    def answer(self, probe: Probe, result: Retrieval, m: Measurement) -> Measurement:
        """The served model's answer from the packed context, as the app prompts it."""
        assert self.llm is not None
        messages = build_messages(result.packing.context, probe.question)
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        try:
            for delta in self.llm.chat_stream(messages, ANSWER_TOKENS, 0.0):
                if delta.text and first is None:
                    first = time.perf_counter() - started
                parts.append(delta.text)
        except LLMError as exc:
            return replace(m, answer_error=str(exc))
        text = "".join(parts).strip()
        citations, _ = cite(text, result.packing.passages)
        return replace(m, answer_ok=contains(text, probe.answer),
                       cited_ok=any(contains(c.text, probe.evidence) for c in citations),
                       ttft_s=round(first, 4) if first is not None else None, answer=text[:500])


def evidence_rank(retriever: Retriever, probe: Probe, mode: SearchMode,
                  budget: int) -> int | None:
    """The rank (1 = first) of the first chunk holding the evidence (or either half of it,
    when it straddles two chunks) in `mode`'s search, as retrieval ranks candidates."""
    half = len(probe.evidence) // 2
    parts = (probe.evidence, probe.evidence[:half], probe.evidence[half:])
    hits = retriever.top_hits(probe.question, RetrieveOptions(search_mode=mode), budget, 10**6)
    for n, hit in enumerate(hits, start=1):
        if any(contains(hit.chunk.core, p) for p in parts):
            return n
    return None


class _Files(IngestProgress):
    def __init__(self, progress: EvalProgress):
        self.progress = progress

    def file_done(self, result: Any) -> None:
        self.progress.advance()


def without_model(settings: Settings) -> Served:
    """What `rag retrieve` packs for when no model is asked: the configured window and
    tokenizer."""
    return Served("none", settings.retrieval.context_window, "settings",
                  load_tokenizer(settings.tokenizer.path), "llama3", None)


def model_for(model: ServedModel, options: EvalOptions) -> tuple[LLMClient | None, Served]:
    """The LLM client and served model an evaluation packs for. The model is started only
    when it writes questions or answers them. Otherwise nothing is started: a client made
    already, or an LLM at a configured URL, is asked for its window (the settings' when it
    does not answer); without either, the settings' window and tokenizer."""
    if options.answers or options.llm_questions:
        llm = model.start()
        return llm, model.served(require_server=True)
    llm_settings = model.settings.llm
    if model.client() is None and not (llm_settings.url or llm_settings.urls):
        return None, without_model(model.settings)
    return None, model.served(require_server=False)
