"""Sentence-aware chunking by tokens of the Llama 3.1 tokenizer.

Each section (page) is cut into *cores* that tile its text exactly; a chunk is one core plus
up to `overlap` tokens of the sentences before it (what gets embedded). Cores are cut only
where the tokenizer's pre-tokenizer starts a new group and the text before the cut ends in
a non-space character or a newline. BPE never merges across such a cut, so the tokens of
the cores add up exactly to the tokens of any run of them joined back together: the packer
counts whole passages by adding stored numbers instead of re-tokenizing 128k tokens.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from dataclasses import dataclass

from ingest.loaders import Section
from ingest.tokenizer import TokenCounter

# The separator every rendered passage ends with (retrieval/packer.py); `end_tokens` below
# is the count of a core followed by it, which differs from the sum when BPE merges them.
PASSAGE_END = "\n\n"


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the document, from 0
    section: int  # index of the section (page) it belongs to
    page: int | None
    text: str  # overlap + core: what is embedded and searched
    core_offset: int  # characters of `text` before the core
    char_start: int  # span of the core in the document text (sections joined by "\n\n")
    char_end: int
    tokens: int  # tokens of `text`
    core_tokens: int  # tokens of the core alone
    end_tokens: int  # tokens of the core followed by PASSAGE_END
    content_hash: str  # of the core text
    ocr: bool = False  # its section was read by OCR

    @property
    def core(self) -> str:
        return self.text[self.core_offset:]


_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=[ \t]+\S)")
_NEWLINE_RUN = re.compile(r"[ \t]*\n[\s]*")


def _cut_candidates(text: str) -> list[int]:
    """Positions after a sentence end (before its spaces) or after a run of newlines."""
    cuts = {m.end() for m in _SENTENCE_END.finditer(text)}
    for m in _NEWLINE_RUN.finditer(text):
        run = m.group()
        cuts.add(m.start() + run.rfind("\n") + 1)
    return sorted(c for c in cuts if 0 < c < len(text))


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
                unit_start, unit_end, n_tokens, overlap_start, n_overlap, tail, n_tail = core
                text = section.text[overlap_start:unit_end]
                chunks.append(Chunk(
                    index=len(chunks), section=number, page=section.page, text=text,
                    core_offset=unit_start - overlap_start,
                    char_start=offset + unit_start, char_end=offset + unit_end,
                    tokens=n_overlap + n_tokens, core_tokens=n_tokens, end_tokens=0,
                    content_hash=hashlib.sha256(
                        section.text[unit_start:unit_end].encode()).hexdigest()[:32],
                    ocr=section.ocr,
                ))
                tails.append(section.text[tail:unit_end] + PASSAGE_END)
                tail_tokens.append(n_tail)
            offset += len(section.text) + 2
        # PASSAGE_END may merge with the core's last pre-token group (a trailing newline
        # run): only the core's last two groups are counted again, with it, in one batch.
        ended = self.counter.count_many(tails)
        return [
            Chunk(**{**c.__dict__, "end_tokens": c.core_tokens - old + new})
            for c, old, new in zip(chunks, tail_tokens, ended, strict=True)
        ]

    def _cores(self, text: str) -> list[tuple[int, int, int, int, int, int, int]]:
        """(core start, core end, core tokens, overlap start, overlap tokens, tail start,
        tail tokens) for one section; the tail is the core's last two pre-token groups.
        Core and overlap boundaries are safe cuts, so their counts are read off the
        section's token offsets."""
        token_starts = self.counter.token_starts(text)
        pretokens = self.counter.pretoken_starts(text)
        pre_set = set(pretokens)
        cuts = [c for c in _cut_candidates(text) if c in pre_set]
        units = self._units(text, cuts, token_starts, pretokens)

        def tokens_between(a: int, b: int) -> int:
            return bisect_left(token_starts, b) - bisect_left(token_starts, a)

        cores: list[tuple[int, int, int, int, int, int, int]] = []
        start = 0
        i = 0
        while i < len(units):
            end = units[i]
            j = i
            # Grow the core unit by unit while it stays within `size` tokens.
            while j + 1 < len(units) and tokens_between(start, units[j + 1]) <= self.core_size:
                j += 1
                end = units[j]
            ov_start = start
            if self.overlap and cores:
                # Whole units before `start`, up to `overlap` tokens.
                k = bisect_left(units, start) - 1
                while k >= 0:
                    prev = units[k - 1] if k > 0 else 0
                    if tokens_between(prev, start) > self.overlap:
                        break
                    ov_start = prev
                    k -= 1
            # The tail starts at a token start (pre-token groups never split a token).
            tail = pretokens[max(bisect_left(pretokens, end) - 2, bisect_left(pretokens, start))]
            tail = max(start, tail)
            cores.append((start, end, tokens_between(start, end), ov_start,
                          tokens_between(ov_start, start), tail, tokens_between(tail, end)))
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
