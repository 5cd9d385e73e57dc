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

A long section is cut in windows of about WINDOW_CHARS (the tokenizer's offsets for a whole
50 MB text take gigabytes): the cores of a window are kept up to WINDOW_MARGIN characters
before its end, where nothing that follows can change them any more, and the next window
starts a few cores back, so the overlap and a table's header are found there as in the whole
text. The chunks are the same as those of the section cut at once (tests/ingest/test_chunker.py
compares them), except in text that has no cut for more than WINDOW_MAX characters.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingest.tokenizer import TokenCounter

if TYPE_CHECKING:  # the loaders are not needed to chunk, and the query path imports this
    from ingest.loaders import Section

WINDOW_CHARS = 1 << 18
WINDOW_MARGIN = 1 << 16
WINDOW_MAX = 1 << 20  # a window grows to this when nothing can be cut; then it is cut as is

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
        return list(self.stream(sections))

    def stream(self, sections: Iterable[Section]) -> Iterator[Chunk]:
        """The chunks of `sections`, as they are cut. A section whose `more` is set continues
        in the next one (a long text read in pieces): they are chunked as one section."""
        index = 0
        number = 0
        offset = 0  # of the section in the document text (sections joined by a blank line)
        window: _Window | None = None
        for section in sections:
            window = window or _Window(self)
            for pieces in window.feed(section.text, final=not section.more):
                ended = self.counter.count_many([p.tail for p in pieces])
                for piece, end in zip(pieces, ended, strict=True):
                    core = piece.core
                    yield Chunk(
                        index=index, section=number, page=section.page, text=piece.text,
                        core_offset=len(core.header) + core.start - core.overlap_start,
                        char_start=offset + piece.start, char_end=offset + piece.end,
                        tokens=core.header_tokens + core.overlap_tokens + core.tokens,
                        core_tokens=core.tokens,
                        # PASSAGE_END may merge with the core's last pre-token group (a
                        # trailing newline run): only its last two groups are counted again.
                        end_tokens=core.tokens - core.tail_tokens + end,
                        content_hash=hashlib.sha256(piece.core_text.encode()).hexdigest()[:32],
                        ocr=section.ocr, page_label=section.label,
                        table_header=len(core.header))
                    index += 1
            if not section.more:
                offset += window.length + 2
                number += 1
                window = None

    def _cores(self, text: str, start: int = 0, continued: bool = False,
               begin: int = 0) -> tuple[list[_Core], list[int]]:
        """The cores of one section (or window of one) from `start` on, with their overlaps
        and tails (the core's last two pre-token groups); `continued`: cores of the section
        came before `start`; `begin`: a cut where the window's own text starts after the
        repeated header of a table (it ends a unit, as in the whole section). Core and
        overlap boundaries are safe cuts, so their counts are read off the section's token
        offsets; a repeated header ends in a newline before a row start, a safe cut too.
        Also returns the cuts between sentences, lines and table rows (not those between
        words of an over-long sentence)."""
        token_starts = self.counter.token_starts(text)
        pretokens = self.counter.pretoken_starts(text)
        pre_set = set(pretokens)
        tables = find_tables(text)
        cuts = _table_cuts([c for c in _cut_candidates(text) if c in pre_set], tables, text)
        if begin and begin not in cuts:
            insort(cuts, begin)
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
        i = bisect_right(units, start)
        while i < len(units):
            header, n_header = "", 0
            after = bool(cores) or continued
            ov_start = overlap_start(start, self.overlap) if self.overlap and after else start
            t = table_at(start) if after else None
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
        return cores, cuts

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


@dataclass(frozen=True)
class _Piece:
    """A core cut from a window, with what its chunk needs of the window's text."""

    core: _Core  # positions in the window
    start: int  # the core's span in the section
    end: int
    text: str  # header + overlap + core
    core_text: str
    tail: str  # the core's last two pre-token groups, followed by PASSAGE_END


class _Window:
    """A section's text fed in pieces and cut in windows (see the module's docstring)."""

    def __init__(self, chunker: Chunker):
        self.chunker = chunker
        self.text = ""  # a repeated table header, then the section from `origin + len(header)`
        self.origin = 0  # section offset of text[0] (the header stands before it)
        self.begin = 0  # where the section's own text starts in `text`
        self.resume = 0  # where the next core starts in `text`
        self.continued = False
        self.length = 0  # characters of the section fed so far

    def feed(self, text: str, final: bool) -> Iterator[list[_Piece]]:
        """The cores that `text` (the section's next piece; the last when `final`) lets
        the window cut, a list per window."""
        self.length += len(text)
        for at in range(0, len(text), WINDOW_CHARS):
            self.text += text[at:at + WINDOW_CHARS]
            while len(self.text) - self.resume >= WINDOW_CHARS:
                pieces = self._cut(False)
                if pieces is None:
                    break
                yield pieces
        if final:
            yield self._cut(True) or []

    def _cut(self, final: bool) -> list[_Piece] | None:
        """The cores that nothing after the window can change; None when there are none
        yet (the window grows)."""
        cores, cuts = self.chunker._cores(self.text, self.resume, self.continued, self.begin)
        keep = cores
        if not final:
            limit = len(self.text) - WINDOW_MARGIN
            keep = [c for c in cores[:-2] if c.end <= limit]
            if not keep:
                if len(self.text) - self.resume < WINDOW_MAX:
                    return None
                keep = cores  # no cut in WINDOW_MAX characters: the window's end is one
        pieces = [self._piece(c) for c in keep]
        if keep:
            self.continued = True
            self._move(keep, cuts, forced=keep is cores)
        return pieces

    def _piece(self, core: _Core) -> _Piece:
        text = self.text
        return _Piece(core, self.origin + core.start, self.origin + core.end,
                      core.header + text[core.overlap_start:core.end],
                      text[core.start:core.end], text[core.tail:core.end] + PASSAGE_END)

    def _move(self, kept: list[_Core], cuts: list[int], forced: bool) -> None:
        """Drops the text before the last kept cores that the next core's overlap may reach
        (more than `overlap` tokens of them), from a cut between sentences (where the units
        of the next window's text are those of the whole section), keeping the header of a
        table they are in."""
        end = kept[-1].end
        anchor = len(self.text) if forced else self.begin
        if not forced:
            tokens = 0
            for core in reversed(kept):
                tokens += core.tokens
                if tokens > self.chunker.overlap:
                    k = bisect_right(cuts, core.start) - 1
                    anchor = max(self.begin, cuts[k] if k >= 0 else 0)
                    break
        header = ""
        for table in find_tables(self.text):
            if table.first_end <= anchor < table.end:
                header = table.header(self.text)
        self.origin += anchor - len(header)
        self.text = header + self.text[anchor:]
        self.begin = len(header)
        self.resume = len(header) + max(0, end - anchor)
