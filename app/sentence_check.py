"""Checked citations: every sentence of an answer against the passages it cites.

A sentence is split off by pysbd (rule-based sentence boundaries: "Dr. Smith", "3.5",
"U.S." stay whole), gets the passages it names with [n] markers (or, with none, the passage
that shares most of its words) and one verdict:

- supported: a cited passage holds enough of its content words, every number and name in
  it, and a sentence whose MiniLM embedding is close to it (that sentence is the evidence);
- unsupported: it cites passages, and none of them holds it;
- uncited: it cites nothing, and no passage of the context holds it.

Numbers, dates and names found in no passage of the context at all are listed per sentence
("1931 appears in no passage of the context"): the likeliest invention in an answer.
The thresholds come from bench/citations.py (SmolLM2 answers on SQuAD; bench/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.citations import MARKER, content_words, markers
from retrieval.packer import Passage

SUPPORTED, UNSUPPORTED, UNCITED = "supported", "unsupported", "uncited"

# Share of a sentence's content words a passage must hold, and the least cosine similarity
# between the sentence and the passage's closest sentence. On 200 SQuAD questions answered by
# SmolLM2 (bench/citations.py; bench/README.md), 0.6/0.6 is the tightest pair that still
# supports 80% or more of the gold-holding sentences the loosest pair (0.4/0.3) supports: 25
# of 30, with 41% of supported sentences holding the gold answer (17% of all sentences do)
# and 92% of their evidence from the gold paragraph; 0.8/0.6 reaches 57% but supports 17.
MIN_WORD_SHARE = 0.6
MIN_SIMILARITY = 0.6
# Passages tried for a sentence without markers (best word share first).
INFERRED_CANDIDATES = 2

# Numbers (1931, 4.50, 1,200, 3rd) and capitalised words that do not start the sentence.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NAME = re.compile(r"\b[A-Z][\w'’-]*\w|\b[A-Z]\b")
_LEADING_MARKERS = re.compile(rf"\s*(?:{MARKER.pattern}\s*)+")
_WORD = re.compile(r"\w+", re.UNICODE)
# Words of a sentence that only frames the answer ("Sure!", "I hope this helps."): such a
# sentence states nothing to check and is never flagged.
_FRAMING = frozenset({"sure", "yes", "okay", "certainly", "course", "glad", "happy", "help",
                      "hope", "thank", "thanks", "here", "following", "great"})

Embed = Callable[[list[str]], Any]  # texts → normalised vectors (rows), e.g. Embedder.embed


@dataclass(frozen=True)
class Span:
    text: str
    start: int  # character offsets in the text it was split from
    end: int


@dataclass
class Evidence:
    label: int
    quote: str  # the passage sentence closest to the checked sentence

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "quote": self.quote}


@dataclass
class SentenceCheck:
    text: str
    start: int  # offsets in the answer
    end: int
    citations: list[int]
    inferred: bool  # True: no marker in the sentence; `citations` is the app's best match
    support: str  # supported | unsupported | uncited
    evidence: Evidence | None = None
    missing: list[str] = field(default_factory=list)  # terms no cited passage holds
    not_in_context: list[str] = field(default_factory=list)  # terms no passage holds
    word_share: float = 0.0  # of the best cited passage
    similarity: float = 0.0
    states: bool = True  # it has content words, numbers or names ("Sure!" has none)
    held_by: int | None = None  # unsupported: a passage it does not cite that holds it

    @property
    def note(self) -> str:
        """Why a sentence is not supported, in a line (empty when it is)."""
        if self.support == SUPPORTED or not self.states:
            return ""
        if self.not_in_context:
            terms = ", ".join(self.not_in_context)
            verb = "appears" if len(self.not_in_context) == 1 else "appear"
            return f"{terms} {verb} in no passage of the context"
        if self.support == UNSUPPORTED:
            cited = ", ".join(f"[{n}]" for n in self.citations)
            lacks = f" ({', '.join(self.missing)} missing)" if self.missing else ""
            elsewhere = f"; [{self.held_by}] does" if self.held_by is not None else ""
            return f"{cited} does not contain it{lacks}{elsewhere}"
        return "no passage of the context contains it"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end,
                "citations": self.citations, "inferred": self.inferred, "support": self.support,
                "evidence": self.evidence.to_dict() if self.evidence else None,
                "missing": self.missing, "not_in_context": self.not_in_context,
                "note": self.note, "held_by": self.held_by, "word_share": round(self.word_share, 3),
                "similarity": round(self.similarity, 3)}


# -- splitting ------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def split_sentences(text: str) -> tuple[Span, ...]:
    """Sentences with their offsets; each line is split on its own (list items, headings),
    and [n] markers that open a sentence go to the one before ("… 1931. [2] Next …").
    Cached: a passage is split again for every sentence and answer that cites it."""
    import pysbd

    segmenter = pysbd.Segmenter(language="en", clean=False)  # not reentrant: one per call
    spans: list[Span] = []
    for line in re.finditer(r"[^\n]+", text):
        pos = line.start()
        for piece in segmenter.segment(line.group(0)):
            start = text.find(piece, pos)
            if start < 0:  # pysbd returned a changed piece: keep the offsets moving
                start = pos
            pos = start + len(piece)
            _add_span(spans, text, start, pos, line.start())
    return tuple(spans)


def _add_span(spans: list[Span], text: str, start: int, end: int, line_start: int) -> None:
    lead = _LEADING_MARKERS.match(text, start, end)
    if lead and spans and spans[-1].start >= line_start:
        prev = spans[-1]
        joined = text[prev.start:lead.end()].rstrip()
        spans[-1] = Span(joined, prev.start, prev.start + len(joined))
        start = lead.end()
    stripped = text[start:end].strip()
    if stripped:
        first = start + (len(text[start:end]) - len(text[start:end].lstrip()))
        spans.append(Span(stripped, first, first + len(stripped)))


# -- terms ------------------------------------------------------------------------------------
def key_terms(sentence: str) -> list[str]:
    """Numbers, dates and proper names as written: what a passage must hold verbatim."""
    terms: list[str] = []
    words = list(_WORD.finditer(sentence))
    first = words[0].start() if words else 0
    for m in _NUMBER.finditer(sentence):
        terms.append(m.group(0).rstrip(".,"))
    for m in _NAME.finditer(sentence):
        if m.start() != first and m.group(0) != "I" and not m.group(0)[0].isdigit():
            terms.append(m.group(0))
    return list(dict.fromkeys(terms))


def _number_key(term: str) -> str:
    return term.replace(",", "")


def _holds(terms_of_text: tuple[set[str], set[str]], term: str) -> bool:
    numbers, words = terms_of_text
    if term[0].isdigit():
        return _number_key(term) in numbers
    return all(w.lower() in words for w in _WORD.findall(term))


def _index(text: str) -> tuple[set[str], set[str]]:
    """A text's numbers (commas dropped) and lower-cased words, for `_holds`."""
    return ({_number_key(m.group(0).rstrip(".,")) for m in _NUMBER.finditer(text)},
            {w.lower() for w in _WORD.findall(text)})


# -- the check --------------------------------------------------------------------------------
@dataclass
class _Candidate:
    passage: Passage
    share: float
    missing: list[str]
    sentences: tuple[Span, ...]
    similarity: float = 0.0
    quote: str = ""


def check_answer(answer: str, passages: Sequence[Passage], embed: Embed,
                 min_share: float = MIN_WORD_SHARE,
                 min_similarity: float = MIN_SIMILARITY) -> list[SentenceCheck]:
    """Each sentence of `answer` with its citations and verdict (see the module docstring)."""
    by_label = {p.label: p for p in passages}
    context = _index("\n".join(p.text for p in passages))
    words_of = {p.label: _stems(p.text) for p in passages}
    checks = []
    for span in split_sentences(answer):
        plain = MARKER.sub(" ", span.text)
        labels = [n for n in markers(span.text) if n in by_label]
        words, terms = _stems(plain), key_terms(plain)
        chosen = labels or _best_matches(words, passages, words_of)
        candidates = [_candidate(by_label[n], words, terms, words_of[n]) for n in chosen]
        _measure(plain, candidates, embed)
        check = _verdict(span, candidates, bool(labels), min_share, min_similarity)
        if check.support == UNSUPPORTED:  # a wrong marker, or a claim no passage makes?
            others = [p for p in passages if p.label not in labels]
            elsewhere = [_candidate(by_label[n], words, terms, words_of[n])
                         for n in _best_matches(words, others, words_of)]
            _measure(plain, elsewhere, embed)
            found = _verdict(span, elsewhere, False, min_share, min_similarity).evidence
            check.held_by = found.label if found else None
        check.not_in_context = [t for t in terms if not _holds(context, t)]
        check.states = bool(words - _FRAMING or terms)
        checks.append(check)
    return checks


def _stems(text: str) -> set[str]:
    """Content words with a plural or possessive s dropped (keeper/keepers)."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in content_words(text)}


def _best_matches(words: set[str], passages: Sequence[Passage],
                  words_of: dict[int, set[str]]) -> list[int]:
    if not words:
        return []
    scored = sorted(((len(words & words_of[p.label]), -p.label) for p in passages), reverse=True)
    return [-neg for shared, neg in scored[:INFERRED_CANDIDATES] if shared]


def _candidate(p: Passage, words: set[str], terms: list[str],
               passage_words: set[str]) -> _Candidate:
    share = len(words & passage_words) / len(words) if words else 0.0
    index = _index(p.text)
    missing = [t for t in terms if not _holds(index, t)]
    return _Candidate(p, share, missing, split_sentences(p.text))


def _measure(sentence: str, candidates: list[_Candidate], embed: Embed) -> None:
    """Each candidate's closest sentence (cosine of normalised MiniLM vectors), in one batch."""
    texts = [sentence] + [s.text for c in candidates for s in c.sentences]
    if len(texts) == 1:
        return
    vectors = embed(texts)
    scores = vectors[1:] @ vectors[0]
    at = 0
    for c in candidates:
        if c.sentences:
            best = at + int(scores[at:at + len(c.sentences)].argmax())
            c.similarity = float(scores[best])
            c.quote = c.sentences[best - at].text
        at += len(c.sentences)


def _verdict(span: Span, candidates: list[_Candidate], explicit: bool, min_share: float,
             min_similarity: float) -> SentenceCheck:
    """Supported by the closest passage that holds it; else unsupported (markers) or uncited.
    The measurements are those of the passage that came closest."""
    labels = [c.passage.label for c in candidates]
    holding = [c for c in candidates if c.share >= min_share and not c.missing
               and c.similarity >= min_similarity]
    if holding:
        best = max(holding, key=lambda c: c.similarity)
        return SentenceCheck(span.text, span.start, span.end,
                             labels if explicit else [best.passage.label], not explicit,
                             SUPPORTED, Evidence(best.passage.label, best.quote),
                             word_share=best.share, similarity=best.similarity)
    check = SentenceCheck(span.text, span.start, span.end, labels if explicit else [],
                          not explicit, UNSUPPORTED if explicit else UNCITED)
    closest = max(candidates, key=lambda c: (c.share, c.similarity), default=None)
    if closest is not None:
        check.word_share, check.similarity = closest.share, closest.similarity
        check.missing = closest.missing
    return check
