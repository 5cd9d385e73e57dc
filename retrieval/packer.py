"""Packing: ranked hits → contiguous labelled passages that fill a token budget exactly.

Pure logic over chunks already fetched; no I/O. Token counts come from the chunker's stored
numbers (cores add up exactly, see ingest/chunker.py), so packing 128k tokens adds numbers
instead of re-tokenizing; with a tokenizer other than the one the chunks were counted with,
the cores are counted afresh and the final text is verified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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

    @classmethod
    def from_payload(cls, point_id: str, payload: dict[str, Any]) -> ChunkRef:
        return cls.from_chunk(point_id, ChunkPayload.from_payload(payload))

    @classmethod
    def from_chunk(cls, point_id: str, p: ChunkPayload) -> ChunkRef:
        return cls(
            id=point_id, document_id=p.document_id, source=p.source, title=p.title,
            type=p.type, page=p.page, section=int(p.section), index=int(p.chunk_index),
            core=p.text[int(p.core_offset):], core_tokens=int(p.core_tokens),
            end_tokens=int(p.end_tokens), content_hash=p.content_hash, tokenizer=p.tokenizer,
            doc_hash=p.doc_hash,
        )


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "document_id": self.document_id, "source": self.source,
            "title": self.title, "page": self.page, "chunks": [self.first, self.last],
            "text": self.text, "tokens": self.tokens, "score": self.score,
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


def header_for(label: int, chunk: ChunkRef | Passage) -> str:
    name = chunk.source.rsplit("/", 1)[-1] or chunk.document_id
    where = f", page {chunk.page}" if chunk.page is not None else ""
    title = f" — {chunk.title}" if chunk.title and chunk.title not in name else ""
    return f"[{label}] {name}{where}{title}\n"


def render(passages: Iterable[Passage]) -> str:
    """The passages as the model reads them: header line, text, blank line."""
    return "".join(p.header + p.text + PASSAGE_END for p in passages)


class Packer:
    def __init__(self, counter: TokenCounter, neighbours: int = 1, layout: Layout = Layout.DOCUMENT):
        self.counter = counter
        self.neighbours = neighbours
        self.layout = layout
        self._header_counts: dict[str, int] = {}

    def _count_headers(self, headers: list[str]) -> list[int]:
        """Token counts of header lines, each distinct line counted once, in one batch."""
        fresh = sorted({h for h in headers if h not in self._header_counts})
        self._header_counts.update(zip(fresh, self.counter.count_many(fresh), strict=True))
        return [self._header_counts[h] for h in headers]

    # -- counts ---------------------------------------------------------------------------
    def _recount(self, chunks: Iterable[ChunkRef]) -> dict[str, tuple[int, int]]:
        """(core, core+end) counts for chunks counted with another tokenizer."""
        foreign = [c for c in chunks if c.tokenizer != self.counter.name]
        if not foreign:
            return {}
        cores = self.counter.count_many([c.core for c in foreign])
        ends = self.counter.count_many([c.core + PASSAGE_END for c in foreign])
        return {c.id: (a, b) for c, a, b in zip(foreign, cores, ends, strict=True)}

    # -- retrieval packing ----------------------------------------------------------------
    def pack(self, hits: list[Hit], chunks: dict[tuple[str, int], ChunkRef], budget: int,
             load: Loader | None = None) -> Packing:
        """Fills `budget` from the best hits, each widened by its neighbours in `chunks`
        (keyed by (document_id, chunk_index)), merging runs that touch.

        With `load`, `chunks` may start with the hits alone: before a hit is widened, `load`
        is called with the next hits in rank order and returns their neighbours. Hits past
        the point where the budget is full never have theirs fetched, and the packing is
        the same as with every neighbour given up front."""
        # Best first; a store returns equal scores in no fixed order (Qdrant's fusion), so
        # ties go by position: the same question packs the same context every time.
        hits = sorted(hits, key=lambda h: (-h.score, h.chunk.document_id, h.chunk.index))
        chunks = dict(chunks)
        counts = self._recount(chunks.values())
        # Bare hits (no neighbours) need nothing more.
        loaded = 0 if load is not None and self.neighbours else len(hits)

        def core_tokens(c: ChunkRef) -> int:
            return counts[c.id][0] if c.id in counts else c.core_tokens

        def end_tokens(c: ChunkRef) -> int:
            return counts[c.id][1] if c.id in counts else c.end_tokens

        # Worst-case header (3-digit label) until labels are known; fixed up at the end.
        # Neighbours only widen a hit within its section, so the hits name every header.
        header_cost: dict[tuple[str, int], int] = {}
        firsts = list({(h.chunk.document_id, h.chunk.section): h.chunk for h in hits}.items())
        header_cost.update(zip([k for k, _ in firsts],
                               self._count_headers([header_for(999, c) for _, c in firsts]),
                               strict=True))

        def header_tokens(c: ChunkRef) -> int:
            key = (c.document_id, c.section)
            if key not in header_cost:
                header_cost[key] = self._count_headers([header_for(999, c)])[0]
            return header_cost[key]

        def run_cost(doc: str, lo: int, hi: int) -> int:
            body = sum(core_tokens(chunks[(doc, i)]) for i in range(lo, hi))
            return header_tokens(chunks[(doc, lo)]) + body + end_tokens(chunks[(doc, hi)])

        def place(doc: str, old: list[list[int]], lo: int, hi: int) -> tuple[list[list[int]], int]:
            """The section's runs with [lo, hi] merged in, and what that adds to the count:
            only the runs it touches change."""
            touched = [r for r in old if r[0] <= hi + 1 and r[1] >= lo - 1]
            if not touched:
                return sorted([*old, [lo, hi]]), run_cost(doc, lo, hi)
            merged = [min(lo, touched[0][0]), max(hi, touched[-1][1])]
            kept = [r for r in old if r[1] < lo - 1 or r[0] > hi + 1]
            delta = run_cost(doc, *merged) - sum(run_cost(doc, a, b) for a, b in touched)
            return sorted([*kept, merged]), delta

        def load_from(rank: int) -> None:
            nonlocal loaded
            assert load is not None
            # The first call takes about as many hits as the budget holds widened, later
            # calls half as many again; ranks already past are never asked for twice.
            per_hit = (2 * self.neighbours + 1) * max(1, core_tokens(hits[rank].chunk))
            want = max(16, (budget - used) // per_hit + 8) if loaded == 0 else \
                max(16, loaded // 2)
            batch = [h.chunk for h in hits[rank:rank + want]]
            loaded = rank + len(batch)
            fresh = {k: v for k, v in load(batch).items() if k not in chunks}
            chunks.update(fresh)
            counts.update(self._recount(fresh.values()))

        runs: dict[tuple[str, int], list[list[int]]] = {}  # (doc, section) -> [[lo, hi], ...]
        best: dict[tuple[str, int], tuple[int, float]] = {}  # chunk -> (rank, score)
        used = 0
        left_out: list[LeftOut] = []
        seen_hashes: dict[str, tuple[str, int]] = {}
        # Copies (the same text in several hits): the copy in the document whose first hit
        # ranks best is the one packed, so one copy of a duplicated file goes in, not
        # pieces of each, whatever order equal scores come in.
        doc_order: dict[str, int] = {}
        canonical: dict[str, tuple[str, int]] = {}
        for hit in hits:
            c = hit.chunk
            doc_order.setdefault(c.document_id, len(doc_order))
            prev = canonical.get(c.content_hash)
            if prev is None or (doc_order[c.document_id], c.index) < (doc_order[prev[0]], prev[1]):
                canonical[c.content_hash] = (c.document_id, c.index)

        def covered(doc: str, section: int, idx: int) -> bool:
            return any(lo <= idx <= hi for lo, hi in runs.get((doc, section), []))

        def elsewhere(doc: str, idx: int) -> bool:
            """The chunk's text is already in the context as another chunk (a copy's)."""
            twin = seen_hashes.get(chunks[(doc, idx)].content_hash)
            return twin is not None and twin != (doc, idx)

        for rank, hit in enumerate(hits):
            c = hit.chunk
            key = (c.document_id, c.index)
            if key not in best:
                best[key] = (rank, hit.score)
            if covered(c.document_id, c.section, c.index):
                continue
            twin = seen_hashes.get(c.content_hash, canonical[c.content_hash])
            if twin != key:
                left_out.append(self._left(c, "duplicate", core_tokens(c), hit.score))
                continue
            sec_key = (c.document_id, c.section)
            old = runs.get(sec_key, [])
            if rank >= loaded:
                # Widening adds chunks (never fewer tokens) and can join at most 2n more
                # runs than the bare hit does, each join saving a header and the last
                # chunk's separator: when the bare hit exceeds the budget by more than
                # that, neither fits, and the neighbours are not worth fetching.
                chunks.setdefault(key, c)
                _, bare = place(c.document_id, old, c.index, c.index)
                slack = 2 * self.neighbours * (header_tokens(c) + 2)
                if used + bare - slack > budget:
                    left_out.append(self._left(c, "budget", core_tokens(c), hit.score))
                    continue
                load_from(rank)
            placed = False
            for width in ((self.neighbours, 0) if self.neighbours else (0,)):
                lo, hi = c.index, c.index
                # Neighbours widen the hit up to a chunk whose text is already in.
                while (lo - 1 >= c.index - width and self._same_section(chunks, c, lo - 1)
                       and not elsewhere(c.document_id, lo - 1)):
                    lo -= 1
                while (hi + 1 <= c.index + width and self._same_section(chunks, c, hi + 1)
                       and not elsewhere(c.document_id, hi + 1)):
                    hi += 1
                new, delta = place(c.document_id, old, lo, hi)
                if used + delta <= budget:
                    runs[sec_key] = new
                    used += delta
                    for i in range(lo, hi + 1):
                        seen_hashes.setdefault(chunks[(c.document_id, i)].content_hash,
                                               (c.document_id, i))
                    placed = True
                    break
            if not placed:
                left_out.append(self._left(c, "budget", core_tokens(c), hit.score))

        passages = []
        for (doc, section), spans in runs.items():
            for lo, hi in spans:
                members = [chunks[(doc, i)] for i in range(lo, hi + 1)]
                ranked = [best[(doc, i)] for i in range(lo, hi + 1) if (doc, i) in best]
                top = min(ranked) if ranked else (len(hits), 0.0)
                first = members[0]
                passages.append(Passage(
                    label=0, document_id=doc, source=first.source, title=first.title,
                    page=first.page, section=section, first=lo, last=hi,
                    text="".join(m.core for m in members),
                    tokens=header_tokens(first) + sum(core_tokens(m) for m in members[:-1])
                    + end_tokens(members[-1]),
                    score=top[1], rank=top[0],
                ))
        ordered = self._order(passages)
        return self._finish(ordered, left_out, budget, "retrieve", bool(counts))

    @staticmethod
    def _same_section(chunks: dict[tuple[str, int], ChunkRef], c: ChunkRef, idx: int) -> bool:
        other = chunks.get((c.document_id, idx))
        return other is not None and other.section == c.section

    @staticmethod
    def _left(c: ChunkRef, reason: str, tokens: int, score: float | None) -> LeftOut:
        return LeftOut(reason, c.document_id, c.source, c.page, c.index, tokens, score)

    def _order(self, passages: list[Passage]) -> list[Passage]:
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
        counts = self._recount(c for doc in documents for c in doc)
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
                tokens = (self._count_headers([header_for(999, first)])[0] + body
                          + counts.get(last.id, (0, last.end_tokens))[1])
                blocks.append(Passage(
                    label=0, document_id=first.document_id, source=first.source,
                    title=first.title, page=first.page, section=section, first=first.index,
                    last=last.index, text="".join(m.core for m in members), tokens=tokens,
                    score=None, rank=None))
                cost += tokens
            if doc and used + cost <= budget:
                passages.extend(blocks)
                used += cost
            elif doc:
                first = doc[0]
                left_out.append(LeftOut("budget", first.document_id, first.source, None, None,
                                        cost))
        return self._finish(passages, left_out, budget, "full", bool(counts))

    # -- labels and the exact final count -------------------------------------------------
    def _finish(self, passages: list[Passage], left_out: list[LeftOut], budget: int,
                mode: str, foreign: bool) -> Packing:
        """Labels in layout order; exact header counts replace the worst-case ones; with
        foreign counts the rendered text itself is counted, trimming until it fits."""
        while True:
            for number, p in enumerate(passages, start=1):
                p.label = number
                p.header = header_for(number, p)
            header_tokens = self._count_headers([p.header for p in passages])
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
                worst, exact = self._count_headers([header_for(999, q), q.header])
                q.tokens += worst - exact
        return Packing(passages, left_out, used, budget, self.layout if mode == "retrieve"
                       else "document", mode, self.counter.name, verified=foreign)

    def _worst(self, passages: list[Passage]) -> list[int]:
        return self._count_headers([header_for(999, p) for p in passages])


def _merge(spans: list[list[int]]) -> list[list[int]]:
    """Sorted runs with overlapping or adjacent ones joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out
