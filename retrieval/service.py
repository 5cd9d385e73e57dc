"""question → hybrid search → neighbours → packed context with a ledger.

The one function the CLI, the API and the answer service call. I/O (store, embedder) is
here; the packing itself is pure (retrieval/packer.py).
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from core.choices import ContextMode, Layout, SearchMode
from core.errors import SettingsError
from core.settings import Settings
from core.tracing import attributes, span
from ingest.embedder import check_store_embedding
from ingest.manifest import Manifest
from ingest.payload import ChunkPayload, point_id
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, Store, Where
from ingest.tokenizer import TokenCounter
from retrieval import hops
from retrieval.budget import Budget, compute_budget
from retrieval.kept_chunks import KeptChunks
from retrieval.packer import ChunkRef, Hit, LeftOut, LineCounts, Packer, Packing, header_for
from retrieval.prompt import ChatFormat, Message, prompt_overhead
from retrieval.variants import keyword_variants

# One retrieval's searches, by (query, limit, promoted): a query searched again (a hop's, or
# after the refill widened another's limit) is not sent to the store twice.
Searched = dict[tuple[str, int, bool], tuple[list[Hit], bool]]


@dataclass(frozen=True)
class Filters:
    document_ids: tuple[str, ...] = ()
    path: str | None = None  # prefix, or a glob when it has * ? [
    types: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.document_ids or self.path or self.types)


@dataclass(frozen=True)
class RetrieveOptions:
    budget_tokens: int | None = None
    layout: Layout | None = None
    search_mode: SearchMode | None = None
    context_mode: ContextMode | None = None
    neighbours: int | None = None
    filters: Filters = field(default_factory=Filters)
    history: tuple[Message, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A retrieval's choices: the request's options over the configured defaults."""

    question: str
    history: tuple[Message, ...]
    requested: int
    layout: Layout
    search_mode: SearchMode
    context_mode: ContextMode
    neighbours: int
    filters: Filters


@dataclass
class Selection:
    """The live documents, those the filters choose, and those they leave out."""

    docs: list[ChunkPayload]
    selected: list[ChunkPayload]
    filtered_out: list[LeftOut]

    @property
    def filtered(self) -> bool:
        return len(self.selected) < len(self.docs)


@dataclass
class Retrieval:
    question: str
    budget: Budget
    packing: Packing
    search_mode: str
    candidates: int
    seconds: float
    message: str = ""
    filtered_out: list[LeftOut] = field(default_factory=list)
    search_query: str = ""  # the text searched for, when not the question alone
    reused: bool = False  # a follow-up's: the previous answer's context, kept

    def to_dict(self, with_context: bool = False) -> dict[str, Any]:
        p = self.packing
        out: dict[str, Any] = {
            "budget": self.budget.to_dict(),
            "used_tokens": p.used_tokens,
            "passages": [x.to_dict() for x in p.passages],
            "left_out": [x.to_dict() for x in p.left_out + self.filtered_out],
            "mode": p.mode,
            "layout": p.layout,
            "search_mode": self.search_mode,
            "candidates": self.candidates,
            "documents": p.documents(),
            "tokenizer": p.counted_with,
            "seconds": round(self.seconds, 4),
            "message": self.message,
            "notes": list(p.notes),
        }
        if with_context:
            out["context"] = p.context
        return out


def _glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def path_matches(source: str, pattern: str) -> bool:
    """Whether the stored absolute `source` matches a path filter. A glob (* ? [) that is
    absolute matches the whole path; a relative one matches its tail, as `find -path` and
    git do (`*report*`, `docs/*.pdf`, `q3.pdf`); `*` also crosses folders. Without a glob it
    is a prefix, a relative one taken from the current folder."""
    if _glob(pattern):
        if os.path.isabs(pattern):
            return fnmatch.fnmatchcase(source, pattern)
        return fnmatch.fnmatchcase(source, "*/" + pattern.removeprefix("./"))
    return source.startswith(os.path.abspath(pattern) if not os.path.isabs(pattern) else pattern)


MAX_QUESTION_CHARS = 8000  # the API schema declares this bound too (app/api/schemas.py)


def check_question(question: str) -> str:
    """The question stripped; the one check every entry (CLI, API, MCP, library) goes through."""
    question = (question or "").strip()
    if not question:
        raise SettingsError("question", "must not be empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise SettingsError("question", f"longer than {MAX_QUESTION_CHARS:,} characters")
    if not question.isascii():
        try:
            question.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: argv bytes that are no UTF-8
            raise SettingsError("question", f"not UTF-8 text (at character {exc.start + 1})") \
                from None
    return question


class Retriever:
    def __init__(self, settings: Settings, store: Store, embedder: Any, counter: TokenCounter,
                 sparse: SparseEncoder | None = None, chat_format: ChatFormat = "llama3"):
        self.settings = settings
        self.chat_format: ChatFormat = chat_format
        self.store = store
        self.embedder = embedder
        self.counter = counter
        self.sparse = sparse or SparseEncoder()
        # A server, where other processes write, is read again every few seconds.
        self._manifest = Manifest(store, None if store.kind == "edge" else self.MANIFEST_TTL_S,
                                  on_read=self._check_embedding)
        self._vectors: dict[tuple[str, str], tuple[Any, Any]] = {}  # the last question's
        self.chunks = KeptChunks(store)
        self.lines = LineCounts(counter)  # header lines' counts, for every question

    MANIFEST_TTL_S = 5.0

    # -- documents and filters ------------------------------------------------------------
    def _documents(self) -> list[ChunkPayload]:
        """Every live document's first chunk (its manifest entry), kept up to date after
        each write by reading again only the documents it touched."""
        return self._manifest.entries()

    def _check_embedding(self, entries: list[ChunkPayload]) -> None:
        check_store_embedding((d.embedding for d in entries), self.embedder)

    def _select(self, docs: list[ChunkPayload], f: Filters) -> list[ChunkPayload]:
        chosen = docs
        if f.document_ids:
            wanted = set(f.document_ids)
            chosen = [d for d in chosen if d.document_id in wanted]
        if f.types:
            types = {t.lower().lstrip(".") for t in f.types}
            chosen = [d for d in chosen if d.type in types]
        if f.path:
            chosen = [d for d in chosen if path_matches(d.source, f.path)]
        return chosen

    # -- the whole job, stage by stage ---------------------------------------------------
    def retrieve(self, question: str, options: RetrieveOptions | None = None,
                 context_window: int | None = None, search: str | None = None) -> Retrieval:
        """The packed context for `question` (the prompt's question; `search`, when given,
        is the text searched for instead) in `context_window` (else the configured one)."""
        started = time.perf_counter()
        plan = self.plan(question, options)
        budget = self.budget_for(plan.question, plan.history, plan.requested, context_window)
        selection = self.select(plan.filters)
        packing, candidates, message = self.fill(plan, budget, selection,
                                                 search or plan.question)
        return Retrieval(plan.question, budget, packing, plan.search_mode, candidates,
                         time.perf_counter() - started, message, selection.filtered_out)

    def plan(self, question: str, options: RetrieveOptions | None = None) -> Plan:
        """The options over the configured defaults, checked."""
        o = options or RetrieveOptions()
        r = self.settings.retrieval
        question = check_question(question)
        requested = o.budget_tokens or r.budget_tokens
        if requested < 1:
            raise SettingsError("budget_tokens", "must be positive")
        return Plan(question, o.history, requested, o.layout or r.layout,
                    o.search_mode or r.search_mode, o.context_mode or r.context_mode,
                    r.neighbours if o.neighbours is None else o.neighbours, o.filters)

    def budget_for(self, question: str, history: tuple[Message, ...], requested: int,
                   context_window: int | None = None) -> Budget:
        """The budget for this question and conversation in the model's window: what the
        prompt and the answer reserve leave for passages."""
        r = self.settings.retrieval
        return compute_budget(
            requested, context_window or r.context_window, r.answer_reserve,
            prompt_overhead(self.counter, question, list(history), self.chat_format))

    def select(self, filters: Filters) -> Selection:
        """The documents the filters choose, and the ones they leave out (listed, up to 100)."""
        docs = self._documents()
        if not filters.active:
            return Selection(docs, docs, [])
        selected = self._select(docs, filters)
        chosen = {d.document_id for d in selected}
        filtered_out = [LeftOut("filter", d.document_id, d.source)
                        for d in docs if d.document_id not in chosen][:100]
        return Selection(docs, selected, filtered_out)

    def fill(self, plan: Plan, budget: Budget, selection: Selection,
             query: str) -> tuple[Packing, int, str]:
        """(packing, candidates searched, message): whole documents when the context mode
        allows and they fit, else searched passages; an empty packing says why."""
        if not selection.docs:
            return self._empty(plan, budget), 0, ("the collection is empty: ingest documents "
                                                  "first (rag ingest PATH)")
        if not selection.selected:
            return self._empty(plan, budget), 0, "no document matches the filter"
        if budget.available == 0:
            need = budget.answer_reserve + budget.prompt_tokens
            return self._empty(plan, budget), 0, (
                f"budget too small: {min(plan.requested, budget.context_window)} tokens leave "
                f"nothing for passages after {need} for the prompt and the answer reserve")
        if plan.context_mode in (ContextMode.AUTO, ContextMode.FULL):
            whole = self._try_whole(selection.selected, budget.available,
                                    Packer(self.counter, plan.neighbours, plan.layout,
                                           lines=self.lines),
                                    forced=plan.context_mode == ContextMode.FULL)
            if whole is not None:
                return whole, 0, ""
        return self.search_and_pack(plan, budget, selection, query)

    def search_and_pack(self, plan: Plan, budget: Budget, selection: Selection,
                        query: str) -> tuple[Packing, int, str]:
        """Searched hits widened by neighbours and packed, searching wider while the budget
        is left short and the store has more."""
        available = budget.available
        narrowed = self._neighbours_for(available, plan.neighbours)
        r = self.settings.retrieval
        packer = Packer(self.counter, narrowed, plan.layout, self._coverage_for(available),
                        self.lines)
        queries = [query, *(keyword_variants(plan.question) if r.query_variants else [])]
        # Hits widened by neighbours fill the budget with fewer of them: search for that
        # many first, and for enough single chunks only when those left room unfilled
        # (hits that touch share neighbours, so each adds less).
        limit = self._candidates(available, 1 + narrowed)
        searched: Searched = {}
        hits, more = self._search_all(queries, plan.search_mode, selection, available, limit,
                                      searched)
        if not hits:
            return self._empty(plan, budget), 0, "no passage matches the question"
        followed = self._follow_hops(plan.question, hits, plan.search_mode, selection,
                                     available, limit, searched)
        if followed:
            queries += followed
            hits, more = self._search_all(queries, plan.search_mode, selection, available,
                                          limit, searched)
        packing = self._pack(packer, hits, narrowed, available)
        # Duplicates (copies of a file) and touching hits add less than a widened hit each:
        # while that leaves the budget short and the store has more, search wider.
        wider = self._candidates(available, 1)
        for _ in range(self.REFILL_ROUNDS):
            if not more or packing.used_tokens >= available * self.REFILL_BELOW:
                break
            limit = min(max(wider, 2 * limit), self.settings.retrieval.max_candidates)
            if limit <= len(hits):
                break
            hits, more = self._search_all(queries, plan.search_mode, selection, available,
                                          limit, searched)
            packing = self._pack(packer, hits, narrowed, available)
        listed = len(queries) - 1 - len(followed)
        if listed:
            packing.notes.append(
                f"sub-queries: the question lists {listed} things; each was searched "
                "on its own beside the question and their hits taken in turn "
                f"(retrieval.query_variants): {' | '.join(queries[1:1 + listed])}")
        if followed:
            packing.notes.append(
                f"follow-up: assignments in the best hits named {len(followed)} more things to "
                f"search, hop by hop, their hits taken in turn with the question's "
                f"(retrieval.follow_hops): {' | '.join(followed)}")
        if narrowed != plan.neighbours:
            packing.notes.append(f"neighbours {plan.neighbours} -> {narrowed}: the budget holds "
                                 f"fewer than {self.MIN_PASSAGES} widened passages")
        return packing, len(hits), ""

    def _empty(self, plan: Plan, budget: Budget) -> Packing:
        return Packing([], [], 0, budget.available, plan.layout, "retrieve", self.counter.name)

    MIN_PASSAGES = 8  # a budget too small for this many widened hits packs bare hits
    REFILL_BELOW = 0.9  # search again, for more candidates, when less of the budget is used
    REFILL_ROUNDS = 3  # ... at most this many times, each for twice as many or more
    PROMOTE_BELOW_CHUNKS = 64  # leaders are promoted when the budget holds fewer chunks
    # The coverage pass where the budget holds fewer chunks (57k tokens at 512/64): at 16-32k
    # it packs spread evidence that widened hits crowd out (bench/multi_needle.py), at 128k
    # the widened hits hold it anyway, and placing ~230 hits bare and then widening them made
    # retrieve+pack 1.3x slower (15k chunks, 131,072 tokens; bench/README.md).
    COVER_BELOW_CHUNKS = 128

    @property
    def _chunk_tokens(self) -> int:
        """Tokens a chunk adds to the context, roughly (its size less the overlap)."""
        return max(32, self.settings.chunking.size - self.settings.chunking.overlap)

    def top_hits(self, query: str, options: RetrieveOptions, available: int, n: int) -> list[Hit]:
        """The `n` best chunks for `query` under the options' mode and filters, as `retrieve`
        ranks them (no packing)."""
        mode = options.search_mode or self.settings.retrieval.search_mode
        selection = self.select(options.filters)
        if not selection.selected:
            return []
        hits, _ = self._search(query, mode, selection, available, self._candidates(available, 1))
        return hits[:n]

    def _coverage_for(self, available: int) -> float:
        """`retrieval.coverage` where few passages fit; none where the budget holds
        COVER_BELOW_CHUNKS chunks or more."""
        covers = available < self.COVER_BELOW_CHUNKS * self._chunk_tokens
        return self.settings.retrieval.coverage if covers else 0.0

    def _neighbours_for(self, available: int, neighbours: int) -> int:
        """Neighbours only when the budget holds MIN_PASSAGES hits widened by them: at 4k
        tokens, three 512-token chunks per passage would leave room for two hits."""
        per_chunk = self._chunk_tokens
        while neighbours and (2 * neighbours + 1) * per_chunk * self.MIN_PASSAGES > available:
            neighbours -= 1
        return neighbours

    def _try_whole(self, selected: list[ChunkPayload], available: int, packer: Packer,
                   forced: bool) -> Packing | None:
        """Whole documents when they all fit (auto), or as many as fit (full). A file
        stored twice (a copy under another name) goes in once: the first by path."""
        first: dict[str, str] = {}
        copies = []
        for d in selected:
            key = d.file_hash or d.document_id
            if first.setdefault(key, d.document_id) != d.document_id:
                copies.append(LeftOut("duplicate", d.document_id, d.source))
        if copies:
            dropped = {x.document_id for x in copies}
            selected = [d for d in selected if d.document_id not in dropped]
        if not forced:
            estimate = sum(int(d.doc_tokens) for d in selected)
            estimate += sum(max(1, int(d.pages or 1)) for d in selected) * \
                self.counter.count(header_for(999, ChunkRef.from_chunk("", selected[0])))
            # Cheap bound first: fetching every chunk only pays when it may fit.
            if estimate > available * 1.05:
                return None
        ids = tuple(d.document_id for d in selected)
        by_doc: dict[str, list[ChunkRef]] = {i: [] for i in ids}
        for point in self.store.scroll(Where(equals={"state": LIVE}, any_of={"document_id": ids})):
            chunk = ChunkRef.from_payload(point.id, point.payload)
            by_doc[chunk.document_id].append(chunk)
        packing = packer.pack_whole([by_doc[i] for i in ids], available)
        if not forced and packing.left_out:
            return None
        packing.left_out.extend(copies)
        return packing

    def _candidates(self, available: int, chunks_per_hit: int) -> int:
        """Enough candidates to fill `available` tokens with hits of `chunks_per_hit` chunks
        each, then half as many again."""
        r = self.settings.retrieval
        limit = math.ceil(available / (self._chunk_tokens * chunks_per_hit) * 1.5)
        return max(r.min_candidates, min(r.max_candidates, limit + r.min_candidates))

    def _pack(self, packer: Packer, hits: list[Hit], neighbours: int, available: int) -> Packing:
        chunks = {(h.chunk.document_id, h.chunk.index): h.chunk for h in hits}
        asked = set(chunks)  # positions fetched (or known) already
        with span("rag.pack", rag__hits=len(hits), rag__available_tokens=available) as traced:
            packing = packer.pack(hits, chunks, available,
                                  load=lambda batch: self._neighbours(batch, neighbours, asked))
            traced.set_attributes(attributes({"rag__tokens_packed": packing.used_tokens,
                                              "rag__passages": len(packing.passages),
                                              "rag__neighbours_fetched": len(asked) - len(hits)}))
        return packing

    MAX_KEPT_VECTORS = 16  # a question and its sub-queries, for the wider searches

    def _query_vectors(self, question: str, mode: SearchMode) -> tuple[Any, Any]:
        """(dense, sparse) query vectors for the mode; the last question's (and its
        sub-queries') are kept, for a second search (more candidates) of the same text."""
        key = (question, mode)
        kept = self._vectors.get(key)  # threads share the retriever: one lookup, no check-then-get
        if kept is None:
            if len(self._vectors) >= self.MAX_KEPT_VECTORS:
                self._vectors.clear()
            dense = self.embedder.embed_query(question) if mode in ("hybrid", "dense") else None
            sparse = self.sparse.query(question) if mode in ("hybrid", "keyword") else None
            kept = self._vectors[key] = (dense, sparse)
        return kept

    def _follow_hops(self, question: str, hits: list[Hit], mode: SearchMode,
                     selection: Selection, available: int, limit: int,
                     searched: Searched) -> list[str]:
        """The follow-up queries (retrieval/hops.py): the names that assignments in the best
        hits tie to the question, then to those names, up to `retrieval.follow_hops` hops."""
        r = self.settings.retrieval
        known = hops.anchors(question)
        anchors = set(known)
        followed: list[str] = []
        for _ in range(r.follow_hops):
            names = hops.assigned_names((h.chunk.core for h in hits[:r.leaders]), anchors,
                                        known)[:hops.MAX_NAMES]
            if not names:
                break
            followed.append(" ".join(names))
            known.update(names)
            anchors = set(names)
            hits = self._searched(followed[-1], mode, selection, available, limit, True,
                                  searched)[0]
        return followed

    def _searched(self, query: str, mode: SearchMode, selection: Selection, available: int,
                  limit: int, promote: bool, searched: Searched) -> tuple[list[Hit], bool]:
        """`_search`, once per query, limit and promotion within one retrieval."""
        key = (query, limit, promote)
        if key not in searched:
            searched[key] = self._search(query, mode, selection, available, limit, promote)
        return searched[key]

    def _search_all(self, queries: list[str], mode: SearchMode, selection: Selection,
                    available: int, limit: int,
                    searched: Searched) -> tuple[list[Hit], bool]:
        """The hits of each query, taken in turn (each one's first, then each one's second,
        ...; a chunk once), so every sub-query's best hits rank near the top; and whether
        any search had more. Fused scores are 1 / (rrf_k + place) in that order."""
        if len(queries) == 1:
            return self._searched(queries[0], mode, selection, available, limit, False,
                                  searched)
        # A sub-query's own point is its keyword leader (the item's name): promoted at any
        # budget, where fusion would rank it below chunks both searches find half-well.
        lists = [self._searched(q, mode, selection, available, limit, n > 0, searched)
                 for n, q in enumerate(queries)]
        order: dict[str, Hit] = {}
        for rank in range(max(len(hits) for hits, _ in lists)):
            for hits, _ in lists:
                if rank < len(hits):
                    order.setdefault(hits[rank].chunk.id, hits[rank])
        k = self.settings.retrieval.rrf_k
        fused = [Hit(h.chunk, 1.0 / (k + n + 1)) for n, h in enumerate(order.values())]
        return fused, any(more for _, more in lists)

    def _search(self, question: str, mode: SearchMode, selection: Selection, available: int,
                limit: int, promote: bool = False) -> tuple[list[Hit], bool]:
        """The hits, best first, and whether the store had more (the limit was reached)."""
        per_chunk = self._chunk_tokens
        r = self.settings.retrieval
        where = Where(equals={"state": LIVE})
        if selection.filtered:
            where = where.and_(Where(any_of={"document_id": tuple(d.document_id
                                                                  for d in selection.selected)}))
        dense, sparse = self._query_vectors(question, mode)
        points = self.store.query(dense=dense, sparse=sparse, mode=mode, where=where,
                                  limit=limit, rrf_k=r.rrf_k, with_payload=False)
        more = len(points) >= limit
        if more and points[0].score != points[-1].score:
            # The store cuts a run of equal scores at the limit anywhere (fusion returns
            # ties in no fixed order): leave that run out, so the same question always
            # gets the same candidates.
            last = points[-1].score
            points = [p for p in points if p.score != last]
        chunks = self.chunks.live([p.id for p in points])
        hits = [Hit(chunks[p.id], p.score) for p in points if p.id in chunks]
        # Two more small searches pay (~20 ms each at 100k chunks) only where few passages
        # fit: a large budget packs every leader anyway.
        if mode == "hybrid" and hits and (promote or
                                          available < self.PROMOTE_BELOW_CHUNKS * per_chunk):
            hits = self._promote_leaders(hits, dense, sparse, where)
        return hits, more

    def _promote_leaders(self, hits: list[Hit], dense: Any, sparse: Any, where: Where) -> list[Hit]:
        """Reciprocal rank fusion ranks a chunk that only one search finds (the exact words
        of a needle, found by keywords alone) below chunks both find half-well; at a small
        budget it is then left out. The top `retrieval.leaders` of each search, alternating,
        go first. Their ids are enough (the hits carry the payloads): Qdrant Edge turns
        payloads into Python objects holding the GIL, most of a query's time."""
        n = self.settings.retrieval.leaders
        leaders: list[list[str]] = []
        for mode in (SearchMode.DENSE, SearchMode.KEYWORD):
            top = self.store.query(dense=dense if mode == SearchMode.DENSE else None,
                                   sparse=sparse if mode == SearchMode.KEYWORD else None,
                                   mode=mode, where=where, limit=n, with_payload=False)
            leaders.append([p.id for p in top])
        order: list[str] = []
        for pair in zip(*[ids + [""] * (n - len(ids)) for ids in leaders], strict=True):
            order += [i for i in pair if i and i not in order]
        present = {h.chunk.id for h in hits}
        promoted = [i for i in order if i in present]
        top_score = max(h.score for h in hits)
        # Scores above every fused one, decreasing in promotion order (the packer packs by
        # score); the rest keep their fused scores and order.
        lift = {i: top_score + (len(promoted) - n) * 1e-6 for n, i in enumerate(promoted)}
        lifted = [Hit(h.chunk, lift.get(h.chunk.id, h.score)) for h in hits]
        return sorted(lifted, key=lambda h: -h.score)  # stable: fused order otherwise

    def _neighbours(self, batch: list[ChunkRef], n: int,
                    asked: set[tuple[str, int]]) -> dict[tuple[str, int], ChunkRef]:
        """Up to `n` chunks on each side of each chunk in `batch` that are not in `asked`
        yet, fetched by their derived ids (only the documents' live version); `asked`
        grows by what was asked for."""
        wanted: set[str] = set()
        for c in batch:
            for i in range(max(0, c.index - n), c.index + n + 1):
                if (c.document_id, i) not in asked:
                    asked.add((c.document_id, i))
                    wanted.add(point_id(c.document_id, c.doc_hash, i))
        return {(c.document_id, c.index): c for c in self.chunks.live(sorted(wanted)).values()}
