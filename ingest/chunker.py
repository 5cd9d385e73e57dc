"""Sentence-aware chunking by tokens of the Llama 3.1 tokenizer.

Each section (page) is cut into *cores* that tile its text exactly; a chunk is one core plus
up to `overlap` tokens of the sentences before it (what gets embedded). Cores are cut only
where the tokenizer's pre-tokenizer starts a new group and the text before the cut ends in
a non-space character or a newline. BPE never merges across such a cut, so the tokens of
the cores add up exactly to the tokens of any run of them joined back together: the packer
counts whole passages by adding stored numbers instead of re-tokenizing 128k tokens.

Tables (Markdown pipe tables, which every loader writes: a header row, a `| --- |` separator,
one line per row) are cut only between rows, never between the header and the first row.
A chunk whose core starts inside a table body gets the table's header rows put in front
of its overlap: part of `text` (embedded, counted in `tokens`) but not of the core, so
passages joined from cores never hold it twice. The header takes the overlap's budget
first and the core's after that, so a chunk stays within `size`; a header longer than half
a core is not repeated (it is cut like any long line).
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ingest.tokenizer import TokenCounter

if TYPE_CHECKING:  # the loaders are not needed to chunk, and the query path imports this
    from ingest.loaders import Section

# The separator every rendered passage ends with (retrieval/packer.py); `end_tokens` below
# is the count of a core followed by it, which differs from the sum when BPE merges them.
PASSAGE_END = "\n\n"


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the document, from 0
    section: int  # index of the section (page) it belongs to
    page: int | None
    text: str  # repeated table header + overlap + core: what is embedded and searched
    core_offset: int  # characters of `text` before the core
    char_start: int  # span of the core in the document text (sections joined by "\n\n")
    char_end: int
    tokens: int  # tokens of `text`
    core_tokens: int  # tokens of the core alone
    end_tokens: int  # tokens of the core followed by PASSAGE_END
    content_hash: str  # of the core text
    ocr: bool = False  # its section was read by OCR
    page_label: str | None = None  # how a citation names the page (`sheet Q3`), if not "page N"
    table_header: int = 0  # characters at the start of `text` that repeat a table's header

    @property
    def core(self) -> str:
        return self.text[self.core_offset:]


@dataclass(frozen=True)
class _Core:
    start: int
    end: int
    tokens: int
    overlap_start: int
    overlap_tokens: int
    tail: int  # start of the core's last two pre-token groups
    tail_tokens: int
    header: str = ""  # a table's header rows repeated in front of the overlap
    header_tokens: int = 0


_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=[ \t]+\S)")
_NEWLINE_RUN = re.compile(r"[ \t]*\n[\s]*")


def _cut_candidates(text: str) -> list[int]:
    """Positions after a sentence end (before its spaces) or after a run of newlines."""
    cuts = {m.end() for m in _SENTENCE_END.finditer(text)}
    for m in _NEWLINE_RUN.finditer(text):
        run = m.group()
        cuts.add(m.start() + run.rfind("\n") + 1)
    return sorted(c for c in cuts if 0 < c < len(text))


_TABLE = re.compile(
    r"^\|[^\n]*\|[ \t]*\n"  # header row
    r"(?P<sep>\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*)(?:\n|$)"  # separator row
    r"(?:\|[^\n]*\|[ \t]*(?:\n|$))*",  # body rows
    re.MULTILINE)


@dataclass(frozen=True)
class Table:
    start: int  # of the header row
    body: int  # start of the first body row
    first_end: int  # end of the first body row (after its newline)
    end: int

    def header(self, text: str) -> str:
        return text[self.start:self.body]


def find_tables(text: str) -> list[Table]:
    """Pipe tables of `text`: a header row, a separator row, then rows."""
    out = []
    for m in _TABLE.finditer(text):
        body = min(m.end("sep") + 1, m.end())
        newline = text.find("\n", body, m.end())
        out.append(Table(m.start(), body, m.end() if newline < 0 else newline + 1, m.end()))
    return out


def _table_cuts(cuts: list[int], tables: list[Table], text: str) -> list[int]:
    """`cuts` less those inside a table's header or its first row (the header never ends a
    chunk alone) and those inside a row: within a table, only the starts of later rows."""
    out = []
    k = 0
    for cut in cuts:
        while k < len(tables) and tables[k].end <= cut:
            k += 1
        t = tables[k] if k < len(tables) else None
        if t is not None and t.start < cut and (cut < t.first_end or text[cut - 1] != "\n"):
            continue
        out.append(cut)
    return out


def _safe_word_cuts(text: str, pretoken_starts: list[int]) -> list[int]:
    """Pre-token starts after a non-space character: cuts for sentences that are too long."""
    return [p for p in pretoken_starts if 0 < p < len(text) and not text[p - 1].isspace()]


class Chunker:
    def __init__(self, counter: TokenCounter, size: int = 512, overlap: int = 64):
        if overlap >= size:
            raise ValueError("overlap must be smaller than size")
        self.counter = counter
        self.size = size
        self.overlap = overlap
        # Overlap + core stays within `size`, so what is embedded never exceeds it.
        self.core_size = size - overlap

    def split(self, sections: list[Section]) -> list[Chunk]:
        chunks: list[Chunk] = []
        tails: list[str] = []
        tail_tokens: list[int] = []
        offset = 0
        for number, section in enumerate(sections):
            for core in self._cores(section.text):
                text = core.header + section.text[core.overlap_start:core.end]
                chunks.append(Chunk(
                    index=len(chunks), section=number, page=section.page, text=text,
                    core_offset=len(core.header) + core.start - core.overlap_start,
                    char_start=offset + core.start, char_end=offset + core.end,
                    tokens=core.header_tokens + core.overlap_tokens + core.tokens,
                    core_tokens=core.tokens, end_tokens=0,
                    content_hash=hashlib.sha256(
                        section.text[core.start:core.end].encode()).hexdigest()[:32],
                    ocr=section.ocr, page_label=section.label, table_header=len(core.header),
                ))
                tails.append(section.text[core.tail:core.end] + PASSAGE_END)
                tail_tokens.append(core.tail_tokens)
            offset += len(section.text) + 2
        # PASSAGE_END may merge with the core's last pre-token group (a trailing newline
        # run): only the core's last two groups are counted again, with it, in one batch.
        ended = self.counter.count_many(tails)
        return [
            replace(c, end_tokens=c.core_tokens - old + new)
            for c, old, new in zip(chunks, tail_tokens, ended, strict=True)
        ]

    def _cores(self, text: str) -> list[_Core]:
        """The cores of one section with their overlaps and tails (the core's last two
        pre-token groups). Core and overlap boundaries are safe cuts, so their counts are
        read off the section's token offsets; a repeated header ends in a newline before a
        row start, a safe cut too."""
        token_starts = self.counter.token_starts(text)
        pretokens = self.counter.pretoken_starts(text)
        pre_set = set(pretokens)
        tables = find_tables(text)
        cuts = _table_cuts([c for c in _cut_candidates(text) if c in pre_set], tables, text)
        units = self._units(text, cuts, token_starts, pretokens)
        header_counts = self.counter.count_many([t.header(text) for t in tables])

        def tokens_between(a: int, b: int) -> int:
            return bisect_left(token_starts, b) - bisect_left(token_starts, a)

        def overlap_start(start: int, budget: int) -> int:
            """Whole units before `start`, up to `budget` tokens."""
            ov_start = start
            k = bisect_left(units, start) - 1
            while k >= 0 and budget > 0:
                prev = units[k - 1] if k > 0 else 0
                if tokens_between(prev, start) > budget:
                    break
                ov_start = prev
                k -= 1
            return ov_start

        def table_at(start: int) -> int | None:
            """The table whose body holds `start` past its first row, by index."""
            for i, t in enumerate(tables):
                if t.first_end <= start < t.end:
                    return i
            return None

        cores: list[_Core] = []
        start = 0
        i = 0
        while i < len(units):
            header, n_header = "", 0
            ov_start = overlap_start(start, self.overlap) if self.overlap and cores else start
            t = table_at(start) if cores else None
            if t is not None and ov_start > tables[t].start \
                    and header_counts[t] <= self.core_size // 2:
                header, n_header = tables[t].header(text), header_counts[t]
            budget = self.core_size - max(0, n_header - self.overlap)
            end = units[i]
            j = i
            # Grow the core unit by unit while it stays within its budget.
            while j + 1 < len(units) and tokens_between(start, units[j + 1]) <= budget:
                j += 1
                end = units[j]
            if header:
                ov_start = overlap_start(start, self.overlap - n_header)
                if n_header + tokens_between(ov_start, end) > self.size:
                    ov_start = start
                if n_header + tokens_between(start, end) > self.size:
                    header, n_header = "", 0  # one row fills the chunk on its own
            # The tail starts at a token start (pre-token groups never split a token).
            tail = pretokens[max(bisect_left(pretokens, end) - 2, bisect_left(pretokens, start))]
            tail = max(start, tail)
            cores.append(_Core(start, end, tokens_between(start, end), ov_start,
                               tokens_between(ov_start, start), tail, tokens_between(tail, end),
                               header, n_header))
            start = end
            i = j + 1
        return cores

    def _units(self, text: str, cuts: list[int], token_starts: list[int],
               pretokens: list[int]) -> list[int]:
        """Unit end positions: sentence cuts, plus every word cut inside an over-long sentence
        (the core loop then packs those words up to `core_size`)."""
        words = _safe_word_cuts(text, pretokens)
        out: list[int] = []
        prev = 0
        for end in [*cuts, len(text)]:
            if bisect_left(token_starts, end) - bisect_left(token_starts, prev) > self.core_size:
                out.extend(words[bisect_left(words, prev + 1):bisect_left(words, end)])
            out.append(end)
            prev = end
        return out
