"""Packing: ranked hits → contiguous labelled passages that fill a token budget exactly.

Pure logic over chunks already fetched; no I/O. Token counts come from the chunker's stored
numbers (cores add up exactly, see ingest/chunker.py), so packing 128k tokens adds numbers
instead of re-tokenizing; with a tokenizer other than the one the chunks were counted with,
the cores are counted afresh and the final text is verified.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import Any

from core.choices import Layout
from ingest.chunker import PASSAGE_END
from ingest.payload import ChunkPayload
from ingest.tokenizer import TokenCounter


@dataclass(frozen=True)
class ChunkRef:
    """One stored chunk as the packer sees it."""

    id: str
    document_id: str
    source: str
    title: str
    type: str
    page: int | None
    section: int
    index: int
    core: str
    core_tokens: int
    end_tokens: int
    content_hash: str
    tokenizer: str = ""
    doc_hash: str = ""
    ocr: bool = False  # its page was read by OCR
    page_label: str | None = None  # `sheet Q3`: how citations name the page, when set
    table_header: str = ""  # the header rows of the table the core starts inside, if any

    @classmethod
    def from_payload(cls, point_id: str, payload: dict[str, Any]) -> ChunkRef:
        """Straight from the stored dict, with ChunkPayload's defaults for keys older points
        lack: a question reads ~500 chunks, and going through a ChunkPayload took 4x as long."""
        get = payload.get
        d = PAYLOAD_DEFAULTS
        text = get("text", d["text"])
        return cls(
            id=point_id, document_id=payload["document_id"], source=get("source", d["source"]),
            title=get("title", d["title"]), type=get("type", d["type"]),
            page=get("page", d["page"]), section=int(get("section", d["section"])),
            index=int(payload["chunk_index"]), core=text[int(get("core_offset", d["core_offset"])):],
            core_tokens=int(get("core_tokens", d["core_tokens"])),
            end_tokens=int(get("end_tokens", d["end_tokens"])),
            content_hash=get("content_hash", d["content_hash"]),
            tokenizer=get("tokenizer", d["tokenizer"]), doc_hash=get("doc_hash", d["doc_hash"]),
            ocr=get("ocr", d["ocr"]), page_label=get("page_label", d["page_label"]),
            table_header=text[:int(get("table_header", d["table_header"]))],
        )

    @classmethod
    def from_chunk(cls, point_id: str, p: ChunkPayload) -> ChunkRef:
        return cls(
            id=point_id, document_id=p.document_id, source=p.source, title=p.title,
            type=p.type, page=p.page, section=int(p.section), index=int(p.chunk_index),
            core=p.text[int(p.core_offset):], core_tokens=int(p.core_tokens),
            end_tokens=int(p.end_tokens), content_hash=p.content_hash, tokenizer=p.tokenizer,
            doc_hash=p.doc_hash, ocr=p.ocr, page_label=p.page_label,
            table_header=p.text[:int(p.table_header)],
        )


PAYLOAD_DEFAULTS = {f.name: f.default for f in fields(ChunkPayload)}


@dataclass(frozen=True)
class Hit:
    chunk: ChunkRef
    score: float


# Given hits' chunks, their neighbours keyed (document_id, chunk_index): how the packer asks
# for neighbours it needs, so that a caller fetches them only for hits that can still fit.
Loader = Callable[[list[ChunkRef]], dict[tuple[str, int], ChunkRef]]


@dataclass
class Passage:
    label: int
    document_id: str
    source: str
    title: str
    page: int | None
    section: int
    first: int  # chunk index range, inclusive
    last: int
    text: str
    tokens: int  # of the whole block: header + text + separator
    score: float | None  # best hit score inside it (None in whole-document mode)
    rank: int | None  # best hit rank inside it (0 = best)
    header: str = ""
    ocr: bool = False  # its page (a passage never spans two) was read by OCR
    page_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "document_id": self.document_id, "source": self.source,
            "title": self.title, "page": self.page, "page_label": self.page_label,
            "chunks": [self.first, self.last],
            "text": self.text, "tokens": self.tokens, "score": self.score, "ocr": self.ocr,
        }


@dataclass
class LeftOut:
    reason: str  # budget | duplicate | filter
    document_id: str
    source: str
    page: int | None = None
    chunk_index: int | None = None
    tokens: int = 0
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Packing:
    passages: list[Passage]
    left_out: list[LeftOut]
    used_tokens: int
    budget: int
    layout: str
    mode: str  # retrieve | full
    counted_with: str = ""
    verified: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def context(self) -> str:
        return render(self.passages)

    def documents(self) -> list[dict[str, Any]]:
        per: dict[str, dict[str, Any]] = {}
        for p in self.passages:
            d = per.setdefault(p.document_id, {"document_id": p.document_id, "source": p.source,
                                              "title": p.title, "passages": 0, "tokens": 0})
            d["passages"] += 1
            d["tokens"] += p.tokens
        return list(per.values())


def where(page: int | None, page_label: str | None) -> str:
    """`, sheet Q3` or `, page 4` (or nothing): how a passage names its place."""
    if page_label:
        return f", {page_label}"
    return f", page {page}" if page is not None else ""


def header_for(label: int, chunk: ChunkRef | Passage) -> str:
    name = chunk.source.rsplit("/", 1)[-1] or chunk.document_id
    where_ = where(chunk.page, chunk.page_label)
    title = f" — {chunk.title}" if chunk.title and chunk.title not in name else ""
    return f"[{label}] {name}{where_}{title}\n"


def render(passages: Iterable[Passage]) -> str:
    """The passages as the model reads them: header line, text, blank line."""
    return "".join(p.header + p.text + PASSAGE_END for p in passages)


class ForeignCounts:
    """(core, core+end) token counts of chunks under tokenizers other than the one they were
    stored with (a served model's own, e.g. a GGUF's), kept across questions: llama.cpp
    takes ~4 ms to count one 2,000-character core, and a question at a small budget counted
    ~40 of them, most of its CPU (bench README, api_load.py). A chunk is known by its point
    id, content hash and core length, which a re-ingest with other text changes; at most
    `limit` chunks are kept, the least recently used dropped first."""

    def __init__(self, limit: int = 50_000):
        self.limit = limit
        self._counts: OrderedDict[tuple[str, str, str, int], tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, c: ChunkRef) -> tuple[str, str, str, int]:
        return name, c.id, c.content_hash, len(c.core)

    def get(self, name: str, chunks: list[ChunkRef]
            ) -> tuple[dict[str, tuple[int, int]], list[ChunkRef]]:
        """(counts kept, by chunk id; the chunks not kept)."""
        known: dict[str, tuple[int, int]] = {}
        fresh: list[ChunkRef] = []
        with self._lock:
            for c in chunks:
                key = self._key(name, c)
                counts = self._counts.get(key)
                if counts is None:
                    fresh.append(c)
                else:
                    self._counts.move_to_end(key)
                    known[c.id] = counts
        return known, fresh

    def put(self, name: str, counted: dict[ChunkRef, tuple[int, int]]) -> None:
        with self._lock:
            for c, counts in counted.items():
                self._counts[self._key(name, c)] = counts
            while len(self._counts) > self.limit:
                self._counts.popitem(last=False)


FOREIGN_COUNTS = ForeignCounts()


class LineCounts:
    """Token counts, under one counter, of the short texts packing counts again and again:
    passage header lines (`[3] notes.txt, page 4`, worst case `[999] ...`) and the header
    rows of tables. A retriever keeps one for its questions (a follow-up, or any question
    over documents packed before, counts none of its headers again); at most `limit` texts,
    the oldest dropped first."""

    def __init__(self, counter: TokenCounter, limit: int = 50_000):
        self.counter = counter
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()  # the API's threads share one retriever

    def counts(self, texts: Iterable[str]) -> dict[str, int]:
        """The count of each distinct text; those not kept counted in one batch."""
        wanted = set(texts)
        with self._lock:
            found = {t: self._counts[t] for t in wanted if t in self._counts}
        fresh = sorted(wanted - found.keys())
        if fresh:
            counted = dict(zip(fresh, self.counter.count_many(fresh), strict=True))
            found.update(counted)
            with self._lock:
                self._counts.update(counted)
                for old in list(islice(self._counts, max(0, len(self._counts) - self.limit))):
                    del self._counts[old]
        return found


class Packer:
    def __init__(self, counter: TokenCounter, neighbours: int = 1, layout: Layout = Layout.DOCUMENT,
                 coverage: float = 0.0, lines: LineCounts | None = None):
        if lines is not None and lines.counter is not counter:
            raise ValueError("the line counts were made with another counter")
        self.counter = counter
        self.neighbours = neighbours
        self.layout = layout
        self.coverage = coverage  # share of the budget first spent on bare hits (see Fill.cover)
        self.lines = lines or LineCounts(counter)
        self._header_counts: dict[str, int] = {}
        self._table_counts: dict[str, int] = {}

    def count_headers(self, headers: list[str]) -> list[int]:
        """Token counts of header lines, each distinct line counted once."""
        fresh = {h for h in headers if h not in self._header_counts}
        if fresh:
            self._header_counts.update(self.lines.counts(fresh))
        return [self._header_counts[h] for h in headers]

    def count_tables(self, chunks: Iterable[ChunkRef]) -> None:
        """Counts the repeated table headers of `chunks` not counted yet."""
        fresh = {c.table_header for c in chunks} - self._table_counts.keys()
        if fresh:
            self._table_counts.update(self.lines.counts(fresh))

    def lead(self, c: ChunkRef) -> int:
        """Tokens of the table header a passage starting at `c` opens with: a passage that
        starts inside a table repeats its header rows, so its numbers keep their columns."""
        if c.table_header not in self._table_counts:
            self.count_tables([c])
        return self._table_counts[c.table_header]

    # -- counts ---------------------------------------------------------------------------
    def recount(self, chunks: Iterable[ChunkRef]) -> dict[str, tuple[int, int]]:
        """(core, core+end) counts for chunks counted with another tokenizer, each chunk
        counted once per tokenizer while FOREIGN_COUNTS keeps it."""
        foreign = [c for c in chunks if c.tokenizer != self.counter.name]
        if not foreign:
            return {}
        known, fresh = FOREIGN_COUNTS.get(self.counter.name, foreign)
        if fresh:
            cores = self.counter.count_many([c.core for c in fresh])
            ends = self.counter.count_many([c.core + PASSAGE_END for c in fresh])
            counted = dict(zip(fresh, zip(cores, ends, strict=True), strict=True))
            FOREIGN_COUNTS.put(self.counter.name, counted)
            known.update((c.id, n) for c, n in counted.items())
        return known

    # -- retrieval packing ----------------------------------------------------------------
    def pack(self, hits: list[Hit], chunks: dict[tuple[str, int], ChunkRef], budget: int,
             load: Loader | None = None) -> Packing:
        """Fills `budget` from the best hits, each widened by its neighbours in `chunks`
        (keyed by (document_id, chunk_index)), merging runs that touch.

        With `load`, `chunks` may start with the hits alone: before a hit is widened, `load`
        is called with the next hits in rank order and returns their neighbours. Hits past
        the point where the budget is full never have theirs fetched, and the packing is
        the same as with every neighbour given up front.

        Stages: rank the hits, place the best bare up to the coverage share of the budget
        (Fill.cover), widen and place each in turn (Fill.add), cut the runs into passages, lay
        them out, then label and count exactly (finish)."""
        fill = Fill(self, rank_hits(hits), chunks, budget, load)
        fill.cover()
        for rank, hit in enumerate(fill.hits):
            fill.add(rank, hit)
        ordered = self.lay_out(fill.passages())
        packing = self.finish(ordered, fill.left_out, budget, "retrieve", bool(fill.counts))
        if fill.bare:
            narrow = len(fill.bare) - len(fill.widened)
            packing.notes.append(
                f"coverage: the {len(fill.bare)} best hits went in first, without neighbours, "
                f"up to {self.coverage:.0%} of the budget (retrieval.coverage); then neighbours "
                f"widened {len(fill.widened)}" + (f", {narrow} stayed bare for lack of room"
                                                   if narrow else ""))
        return packing

    def lay_out(self, passages: list[Passage]) -> list[Passage]:
        by_position = sorted(passages, key=lambda p: (p.document_id, p.section, p.first))
        by_rank = sorted(by_position, key=lambda p: (p.rank, p.document_id, p.first))
        if self.layout == "relevance":
            return by_rank
        if self.layout == "edges":
            # Best evidence where models read best: 1st, 3rd, 5th… from the start,
            # 2nd, 4th… from the end.
            front = by_rank[0::2]
            back = by_rank[1::2]
            return front + back[::-1]
        doc_rank: dict[str, int] = {}
        for p in by_rank:
            doc_rank.setdefault(p.document_id, len(doc_rank))
        return sorted(by_position, key=lambda p: (doc_rank[p.document_id], p.section, p.first))

    # -- whole documents ------------------------------------------------------------------
    def pack_whole(self, documents: list[list[ChunkRef]], budget: int) -> Packing:
        """Whole documents (each a list of its chunks), in the order given, until the budget
        is spent; one passage per section (page)."""
        counts = self.recount(c for doc in documents for c in doc)
        passages: list[Passage] = []
        left_out: list[LeftOut] = []
        used = 0
        for doc in documents:
            sections: dict[int, list[ChunkRef]] = {}
            for c in sorted(doc, key=lambda c: c.index):
                sections.setdefault(c.section, []).append(c)
            blocks = []
            cost = 0
            for section, members in sections.items():
                first = members[0]
                body = sum(counts.get(m.id, (m.core_tokens, 0))[0] for m in members[:-1])
                last = members[-1]
                tokens = (self.count_headers([header_for(999, first)])[0] + body
                          + counts.get(last.id, (0, last.end_tokens))[1])
                blocks.append(Passage(
                    label=0, document_id=first.document_id, source=first.source,
                    title=first.title, page=first.page, section=section, first=first.index,
                    last=last.index, text="".join(m.core for m in members), tokens=tokens,
                    score=None, rank=None, ocr=first.ocr, page_label=first.page_label))
                cost += tokens
            if doc and used + cost <= budget:
                passages.extend(blocks)
                used += cost
            elif doc:
                first = doc[0]
                left_out.append(LeftOut("budget", first.document_id, first.source, None, None,
                                        cost))
        return self.finish(passages, left_out, budget, "full", bool(counts))

    # -- labels and the exact final count -------------------------------------------------
    def finish(self, passages: list[Passage], left_out: list[LeftOut], budget: int,
                mode: str, foreign: bool) -> Packing:
        """Labels in layout order; exact header counts replace the worst-case ones; with
        foreign counts the rendered text itself is counted, trimming until it fits."""
        while True:
            for number, p in enumerate(passages, start=1):
                p.label = number
                p.header = header_for(number, p)
            header_tokens = self.count_headers([p.header for p in passages])
            for p, worst, exact in zip(passages, self._worst(passages), header_tokens,
                                       strict=True):
                p.tokens += exact - worst
            used = sum(p.tokens for p in passages)
            if foreign:
                used = self.counter.count(render(passages)) if passages else 0
            if used <= budget or not passages:
                break
            # Only reachable with foreign tokenizers or > 999 passages: drop the weakest.
            weakest = max(range(len(passages)),
                          key=lambda i: (passages[i].rank is not None, passages[i].rank or 0, i))
            p = passages.pop(weakest)
            left_out.append(LeftOut("budget", p.document_id, p.source, p.page, p.first,
                                    p.tokens, p.score))
            for q in passages:  # back to worst-case headers for the next round
                worst, exact = self.count_headers([header_for(999, q), q.header])
                q.tokens += worst - exact
        return Packing(passages, left_out, used, budget, self.layout if mode == "retrieve"
                       else "document", mode, self.counter.name, verified=foreign)

    def _worst(self, passages: list[Passage]) -> list[int]:
        return self.count_headers([header_for(999, p) for p in passages])


def rank_hits(hits: list[Hit]) -> list[Hit]:
    """Best first; a store returns equal scores in no fixed order (Qdrant's fusion), so ties
    go by position: the same question packs the same context every time."""
    return sorted(hits, key=lambda h: (-h.score, h.chunk.document_id, h.chunk.index))


def canonical_copies(hits: list[Hit]) -> dict[str, tuple[str, int]]:
    """For each chunk text (content hash), the copy to pack: the one in the document whose
    first hit ranks best, so one copy of a duplicated file goes in, not pieces of each,
    whatever order equal scores come in."""
    doc_order: dict[str, int] = {}
    canonical: dict[str, tuple[str, int]] = {}
    for hit in hits:
        c = hit.chunk
        doc_order.setdefault(c.document_id, len(doc_order))
        prev = canonical.get(c.content_hash)
        if prev is None or (doc_order[c.document_id], c.index) < (doc_order[prev[0]], prev[1]):
            canonical[c.content_hash] = (c.document_id, c.index)
    return canonical


def _same_section(chunks: dict[tuple[str, int], ChunkRef], c: ChunkRef, idx: int) -> bool:
    other = chunks.get((c.document_id, idx))
    return other is not None and other.section == c.section


def _left(c: ChunkRef, reason: str, tokens: int, score: float | None) -> LeftOut:
    return LeftOut(reason, c.document_id, c.source, c.page, c.index, tokens, score)


class Fill:
    """One retrieval packing in progress: ranked hits placed one by one, each widened by its
    neighbours when that fits, as runs of chunks per (document, section) whose token count
    is kept exact as runs grow and merge. Header counts are worst case (3-digit labels)
    until the passages are labelled."""

    MIN_BATCH = 8  # hits whose neighbours one `load` call asks for, at least

    def __init__(self, packer: Packer, hits: list[Hit], chunks: dict[tuple[str, int], ChunkRef],
                 budget: int, load: Loader | None):
        self.packer = packer
        self.neighbours = packer.neighbours
        self.hits = hits
        self.chunks = dict(chunks)
        self.budget = budget
        self._load = load
        self.counts = packer.recount(self.chunks.values())
        packer.count_tables(self.chunks.values())
        # Bare hits (no neighbours) need nothing more.
        self.loaded = 0 if load is not None and self.neighbours else len(hits)
        # Neighbours only widen a hit within its section, so the hits name every header.
        firsts = list({(h.chunk.document_id, h.chunk.section): h.chunk for h in hits}.items())
        self.header_cost: dict[tuple[str, int], int] = dict(zip(
            [k for k, _ in firsts], packer.count_headers([header_for(999, c) for _, c in firsts]),
            strict=True))
        self.runs: dict[tuple[str, int], list[list[int]]] = {}  # (doc, section) -> [[lo, hi]]
        self.best: dict[tuple[str, int], tuple[int, float]] = {}  # chunk -> (rank, score)
        self.used = 0
        self.left_out: list[LeftOut] = []
        self.seen_hashes: dict[str, tuple[str, int]] = {}
        self.canonical = canonical_copies(hits)
        self.bare: set[tuple[str, int]] = set()  # hits placed by cover(), not widened yet
        self.widened: set[tuple[str, int]] = set()  # ... and those add() widened afterwards

    # -- counts ---------------------------------------------------------------------------
    def core_tokens(self, c: ChunkRef) -> int:
        return self.counts[c.id][0] if c.id in self.counts else c.core_tokens

    def end_tokens(self, c: ChunkRef) -> int:
        return self.counts[c.id][1] if c.id in self.counts else c.end_tokens

    def header_tokens(self, c: ChunkRef) -> int:
        key = (c.document_id, c.section)
        if key not in self.header_cost:
            self.header_cost[key] = self.packer.count_headers([header_for(999, c)])[0]
        return self.header_cost[key]

    def run_cost(self, doc: str, lo: int, hi: int) -> int:
        chunks = self.chunks
        body = sum(self.core_tokens(chunks[(doc, i)]) for i in range(lo, hi))
        first = chunks[(doc, lo)]
        return (self.header_tokens(first) + self.packer.lead(first) + body
                + self.end_tokens(chunks[(doc, hi)]))

    def place(self, doc: str, old: list[list[int]], lo: int,
              hi: int) -> tuple[list[list[int]], int]:
        """The section's runs with [lo, hi] merged in, and what that adds to the count: only
        the runs it touches change."""
        touched = [r for r in old if r[0] <= hi + 1 and r[1] >= lo - 1]
        if not touched:
            return sorted([*old, [lo, hi]]), self.run_cost(doc, lo, hi)
        merged = [min(lo, touched[0][0]), max(hi, touched[-1][1])]
        kept = [r for r in old if r[1] < lo - 1 or r[0] > hi + 1]
        delta = self.run_cost(doc, *merged) - sum(self.run_cost(doc, a, b) for a, b in touched)
        return sorted([*kept, merged]), delta

    # -- neighbours, fetched late ---------------------------------------------------------
    def load_from(self, rank: int) -> None:
        assert self._load is not None
        # Each call takes about as many hits as what is left of the budget holds widened,
        # and a few more (hits that touch share neighbours, so each adds less); ranks
        # already past are never asked for twice. Sized from what is left, the calls read
        # ~235 neighbours a question at 100k chunks and 128k tokens where half as many
        # hits again each time read ~315, most of the extra for hits that never fit.
        per_hit = (2 * self.neighbours + 1) * max(1, self.core_tokens(self.hits[rank].chunk))
        want = max(self.MIN_BATCH, (self.budget - self.used) // per_hit + self.MIN_BATCH // 2)
        batch = [h.chunk for h in self.hits[rank:rank + want]]
        self.loaded = rank + len(batch)
        fresh = {k: v for k, v in self._load(batch).items() if k not in self.chunks}
        self.chunks.update(fresh)
        self.counts.update(self.packer.recount(fresh.values()))

    def worth_loading(self, c: ChunkRef, old: list[list[int]]) -> bool:
        """Widening adds chunks (never fewer tokens) and can join at most 2n more runs than
        the bare hit does, each join saving a header and the last chunk's separator: when
        the bare hit exceeds the budget by more than that, neither fits, and the neighbours
        are not worth fetching."""
        self.chunks.setdefault((c.document_id, c.index), c)
        _, bare = self.place(c.document_id, old, c.index, c.index)
        slack = 2 * self.neighbours * (self.header_tokens(c) + 2)
        return self.used + bare - slack <= self.budget

    # -- placing one hit ------------------------------------------------------------------
    def covered(self, doc: str, section: int, idx: int) -> bool:
        return any(lo <= idx <= hi for lo, hi in self.runs.get((doc, section), []))

    def elsewhere(self, doc: str, idx: int) -> bool:
        """The chunk's text is already in the context as another chunk (a copy's)."""
        twin = self.seen_hashes.get(self.chunks[(doc, idx)].content_hash)
        return twin is not None and twin != (doc, idx)

    def cover(self) -> None:
        """Coverage before context: with neighbours on, the best hits go in bare, in rank
        order, until the next would pass the coverage share of the budget. Evidence spread
        over many places then gets a passage each before any hit's neighbours take three
        times its room; add() widens them afterwards while the budget allows."""
        share = int(self.budget * self.packer.coverage)
        if not self.neighbours or share <= 0:
            return
        for rank, hit in enumerate(self.hits):
            c = hit.chunk
            key = (c.document_id, c.index)
            self.best.setdefault(key, (rank, hit.score))
            if self.covered(c.document_id, c.section, c.index) or \
                    self.seen_hashes.get(c.content_hash, self.canonical[c.content_hash]) != key:
                continue  # add() records the duplicate
            new, delta = self.place(c.document_id, self.runs.get((c.document_id, c.section), []),
                                    c.index, c.index)
            if self.used + delta > share:
                return
            self.runs[(c.document_id, c.section)] = new
            self.used += delta
            self.seen_hashes.setdefault(c.content_hash, key)
            self.bare.add(key)

    def add(self, rank: int, hit: Hit) -> None:
        """Places the hit of rank `rank`: skipped when already inside a run (widened, when
        cover() placed it bare), left out as a duplicate or when it does not fit, else
        widened as far as the budget allows."""
        c = hit.chunk
        key = (c.document_id, c.index)
        if key not in self.best:
            self.best[key] = (rank, hit.score)
        if key in self.bare and key not in self.widened:
            self.widen_bare(rank, c)
            return
        if self.covered(c.document_id, c.section, c.index):
            return
        twin = self.seen_hashes.get(c.content_hash, self.canonical[c.content_hash])
        if twin != key:
            self.left_out.append(_left(c, "duplicate", self.core_tokens(c), hit.score))
            return
        old = self.runs.get((c.document_id, c.section), [])
        if rank >= self.loaded:
            if not self.worth_loading(c, old):
                self.left_out.append(_left(c, "budget", self.core_tokens(c), hit.score))
                return
            self.load_from(rank)
        for width in ((self.neighbours, 0) if self.neighbours else (0,)):
            if self.widen(c, width, old):
                return
        self.left_out.append(_left(c, "budget", self.core_tokens(c), hit.score))

    def widen_bare(self, rank: int, c: ChunkRef) -> None:
        """Widens a hit cover() placed bare, when its neighbours fit."""
        self.widened.add((c.document_id, c.index))
        if self.used >= self.budget:
            return
        if rank >= self.loaded:
            self.load_from(rank)
        if not self.widen(c, self.neighbours, self.runs[(c.document_id, c.section)]):
            self.widened.discard((c.document_id, c.index))

    def widen(self, c: ChunkRef, width: int, old: list[list[int]]) -> bool:
        """Places `c` widened by up to `width` chunks each side (up to a chunk whose text is
        already in), when that fits; whether it did."""
        doc = c.document_id
        lo, hi = c.index, c.index
        while (lo - 1 >= c.index - width and _same_section(self.chunks, c, lo - 1)
               and not self.elsewhere(doc, lo - 1)):
            lo -= 1
        while (hi + 1 <= c.index + width and _same_section(self.chunks, c, hi + 1)
               and not self.elsewhere(doc, hi + 1)):
            hi += 1
        new, delta = self.place(doc, old, lo, hi)
        if self.used + delta > self.budget:
            return False
        self.runs[(doc, c.section)] = new
        self.used += delta
        for i in range(lo, hi + 1):
            self.seen_hashes.setdefault(self.chunks[(doc, i)].content_hash, (doc, i))
        return True

    # -- the runs as passages -------------------------------------------------------------
    def passages(self) -> list[Passage]:
        """One unlabelled passage per run, with its best hit's rank and score."""
        out = []
        for (doc, section), spans in self.runs.items():
            for lo, hi in spans:
                members = [self.chunks[(doc, i)] for i in range(lo, hi + 1)]
                ranked = [self.best[(doc, i)] for i in range(lo, hi + 1) if (doc, i) in self.best]
                top = min(ranked) if ranked else (len(self.hits), 0.0)
                first = members[0]
                out.append(Passage(
                    label=0, document_id=doc, source=first.source, title=first.title,
                    page=first.page, section=section, first=lo, last=hi,
                    text=first.table_header + "".join(m.core for m in members),
                    tokens=self.header_tokens(first) + self.packer.lead(first)
                    + sum(self.core_tokens(m) for m in members[:-1]) + self.end_tokens(members[-1]),
                    score=top[1], rank=top[0], ocr=first.ocr, page_label=first.page_label,
                ))
        return out
