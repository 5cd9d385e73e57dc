"""Citations: [n] markers in an answer mapped to the passages the model was given.

Markers that name no passage are flagged, never shown as sources. Small models often write
no markers at all; then the passages the answer draws on are found by word overlap and
returned marked `inferred`, so a reader can tell a model's citation from the app's guess.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from retrieval.packer import Passage

# [2]  [1, 3]  [1; 3]  [2-4]  [2–4]  (a [1][3] run is two markers)
MARKER = re.compile(r"\[(\s*\d{1,4}(?:\s*(?:[,;]|-|–)\s*\d{1,4})*\s*)\]")
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?", re.UNICODE)
_STOP = frozenset("""
a an and are as at be been but by can could did do does for from had has have he her his how i
if in into is it its me my no not of on or our she so than that the their them then there these
they this those to was we were what when where which who whom why will with would you your
passage passages document documents answer question according cannot find
""".split())  # noqa: SIM905

# Share of the answer's content words a passage must hold to be an inferred source. On 40
# SQuAD questions answered by SmolLM2 (bench/cpu_llm.py rows), 0.5 attributed 9 answers (8
# to the right passage), 0.3 attributed 21 (19 right), 0.2 attributed 31 (27 right).
MIN_INFERRED_OVERLAP = 0.3
MAX_INFERRED = 3


@dataclass
class Citation:
    label: int
    document_id: str
    source: str
    title: str
    page: int | None
    text: str  # the whole passage
    quote: str  # the passage sentence closest to the answer (what a UI highlights)
    quote_start: int  # character offsets of `quote` inside `text`
    quote_end: int
    inferred: bool  # True: the model wrote no marker; found by overlap
    ocr: bool = False  # the passage's page was read by OCR
    page_label: str | None = None  # `sheet Q3`: shown instead of the page number when set

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def markers(answer: str) -> list[int]:
    """Labels in order of first appearance; ranges expand ([2-4] → 2, 3, 4, at most 50)."""
    seen: list[int] = []
    for match in MARKER.finditer(answer):
        for part in re.split(r"\s*[,;]\s*", match.group(1).strip()):
            bounds = re.split(r"\s*[-–]\s*", part)
            lo, hi = int(bounds[0]), int(bounds[-1])
            for label in range(lo, min(hi, lo + 49) + 1) if hi >= lo else [lo, hi]:
                if label not in seen:
                    seen.append(label)
    return seen


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry content: no stop words, no one- or two-letter words
    (numbers stay)."""
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(text))
            if w not in _STOP and (len(w) > 2 or w.isdigit())}


def _best_sentence(passage: str, answer_words: set[str]) -> tuple[str, int, int]:
    """The sentence sharing most content words with the answer (headings only when no
    sentence shares any); ties go to the shorter, then the earlier one."""
    best: tuple[tuple[int, int, int], str, int, int] = ((0, 0, 0), "", 0, 0)
    for m in _SENTENCE.finditer(passage):
        sentence = m.group(0).strip()
        words = content_words(sentence)
        if not words:
            continue
        heading = sentence.startswith("#") or not sentence.endswith((".", "!", "?", ":"))
        key = (len(words & answer_words), 0 if heading else 1, -len(words))
        if key[0] and key > best[0]:
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
            best = (key, sentence, start, start + len(sentence))
    return best[1], best[2], best[3]


def _citation(p: Passage, answer_words: set[str], inferred: bool) -> Citation:
    quote, start, end = _best_sentence(p.text, answer_words)
    return Citation(p.label, p.document_id, p.source, p.title, p.page, p.text, quote, start, end,
                    inferred, p.ocr, p.page_label)


def cite(answer: str, passages: list[Passage]) -> tuple[list[Citation], list[int]]:
    """(citations, invalid labels). Explicit markers win; with none, inferred by overlap."""
    by_label = {p.label: p for p in passages}
    answer_words = content_words(MARKER.sub(" ", answer))
    labels = markers(answer)
    valid = [n for n in labels if n in by_label]
    invalid = [n for n in labels if n not in by_label]
    if valid:
        return [_citation(by_label[n], answer_words, False) for n in valid], invalid
    return infer(answer_words, passages), invalid


def infer(answer_words: set[str], passages: list[Passage]) -> list[Citation]:
    """The passages holding the most of the answer's content words (at least
    MIN_INFERRED_OVERLAP of them, and within 90% of the best passage's share)."""
    if not answer_words:
        return []
    scored = []
    for p in passages:
        share = len(answer_words & content_words(p.text)) / len(answer_words)
        if share >= MIN_INFERRED_OVERLAP:
            scored.append((share, -(p.rank if p.rank is not None else 10**6), p))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    if not scored:
        return []
    top = scored[0][0]
    chosen = [p for share, _, p in scored if share >= top * 0.9][:MAX_INFERRED]
    return [_citation(p, answer_words, True) for p in sorted(chosen, key=lambda p: p.label)]
