"""Probes made from the user's corpus: needles (synthetic facts inserted into copies of
stored documents) and passages (distinctive stored sentences, asked about).

A probe passes a cell when its evidence sentence is inside the packed context; an answer is
right when it contains the probe's answer.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from app.evaluation.corpus import StoredDocument

ProbeKind = Literal["needle", "passage"]

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOP = frozenset("""
about above after again against also among an and any are around because been before being
below between both but can could did does doing down during each even ever every from further
had has have having her here hers him his how however into its itself just less many more most
much must neither nor not now off once only other our ours out over own same she should since
some such than that the their theirs them then there these they this those through thus too
under until upon very was were what when where whether which while who whom whose why will
with within without would yet you your yours one two three first also may might like make
made well way ways still often
""".split())  # noqa: SIM905

_FIRST = ("Orlanda", "Tamsin", "Bertil", "Quenby", "Ysolde", "Caspian", "Perpetua", "Anselm",
          "Wilhelmina", "Evander", "Isolde", "Lorcan", "Marisol", "Thaddeus", "Zenobia", "Osric")
_LAST_A = ("Var", "Quil", "Thorn", "Bex", "Mor", "Zan", "Pell", "Drak", "Fen", "Gal", "Hux", "Kest")
_LAST_B = ("strom", "wick", "avy", "ottle", "indar", "essa", "ubrin", "olm", "ast", "erby")
_OBJECTS = ("brass telescope", "green ledger", "silver compass", "walnut music box",
            "clay lantern", "copper kettle", "linen map", "pewter chess set")
# (fact sentence, question) templates: name, object and number fill them.
_TEMPLATES = (
    ("{name} keeps the {obj} in locker number {num}.",
     "In which locker number does {name} keep the {obj}?"),
    ("The {obj} that {name} bought cost exactly {num} crowns.",
     "How many crowns did the {obj} that {name} bought cost?"),
    ("{name} had the {obj} repaired in workshop {num}.",
     "In which workshop did {name} have the {obj} repaired?"),
)
MASK = "____"
MASKED_WORDS = 2


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    question: str
    evidence: str  # the sentence the packed context must hold
    answer: str  # what a right answer contains
    document: str  # source of the document holding the evidence
    depth: float  # % into that document
    made_by: str  # template | llm | mask

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def normalize(text: str) -> str:
    return " ".join(text.split()).lower()


def contains(haystack: str, needle: str) -> bool:
    return bool(needle) and normalize(needle) in normalize(haystack)


# -- needles -------------------------------------------------------------------------------
def needle_facts(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """`n` (sentence, question, answer) facts with random names and numbers, all distinct."""
    facts: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    while len(facts) < n:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST_A)}{rng.choice(_LAST_B)}"
        if name in seen:
            continue
        seen.add(name)
        obj, num = rng.choice(_OBJECTS), str(rng.randint(1000, 9999))
        sentence, question = rng.choice(_TEMPLATES)
        facts.append((sentence.format(name=name, obj=obj, num=num),
                      question.format(name=name, obj=obj), num))
    return facts


def depths(n: int) -> list[float]:
    """`n` depths spread evenly over 0-100%."""
    return [50.0] if n == 1 else [100.0 * i / (n - 1) for i in range(n)]


def insert_at(text: str, sentence: str, depth: float) -> tuple[str, float]:
    """`text` with `sentence` at the sentence boundary at or before `depth`% of its
    characters, and the depth it landed at."""
    target = round(len(text) * depth / 100)
    if depth >= 100:
        pos = len(text)
    else:
        ends = [0] + [m.end() for m in _SENTENCE_END.finditer(text, 0, target + 1)
                      if m.end() <= target]
        pos = ends[-1]
    before, after = text[:pos].rstrip(), text[pos:].lstrip()
    joined = " ".join(x for x in (before, sentence, after) if x)
    return joined, 100.0 * pos / max(1, len(text))


def needle_copies(chosen: list[StoredDocument], n: int,
                  rng: random.Random) -> tuple[dict[str, str], list[Probe]]:
    """Copies (file name → text) of the `chosen` documents holding `n` needles at depths
    0-100% (the first document the first needle, and so on, round), and their probes."""
    texts: dict[int, str] = {}
    probes: list[Probe] = []
    for i, ((sentence, question, answer), depth) in enumerate(
            zip(needle_facts(rng, n), depths(n), strict=True)):
        slot = i % len(chosen)
        text, landed = insert_at(texts.get(slot, chosen[slot].text), sentence, depth)
        texts[slot] = text
        probes.append(Probe("needle", question, sentence, answer,
                            copy_name(slot, chosen[slot]), round(landed, 1), "template"))
    return {copy_name(s, chosen[s]): t for s, t in texts.items()}, probes


def copy_name(slot: int, doc: StoredDocument) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", doc.entry.source.rsplit("/", 1)[-1])[:60]
    return f"needle-{slot:04d}-{stem}.txt"


# -- passages ------------------------------------------------------------------------------
def content_words(sentence: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(sentence) if len(w) > 3 and w.lower() not in _STOP]


def document_frequency(docs: list[StoredDocument]) -> Counter[str]:
    df: Counter[str] = Counter()
    for d in docs:
        for c in d.chunks:
            df.update(set(content_words(c.core)))
    return df


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text)]


def distinctive(sentence: str, df: Counter[str], chunks: int) -> float:
    """Mean rarity (idf) of a sentence's content words; 0 for one too short or too long to
    be a fair probe."""
    words = content_words(sentence)
    if len(words) < 5 or not 8 <= len(sentence.split()) <= 60:
        return 0.0
    return sum(math.log((1 + chunks) / (1 + df[w])) for w in words) / len(words)


def pick_sentence(doc: StoredDocument, depth: float, df: Counter[str], chunks: int,
                  taken: set[str]) -> tuple[str, float] | None:
    """The most distinctive sentence not yet taken nearest `depth`% of the document, and
    the depth it is at."""
    n = len(doc.chunks)
    start = min(n - 1, round(depth / 100 * (n - 1)))
    for index in sorted(range(n), key=lambda i: abs(i - start)):
        scored = [(distinctive(s, df, chunks), s) for s in sentences(doc.chunks[index].core)]
        best = [(score, s) for score, s in scored if score > 0 and normalize(s) not in taken]
        if best:
            score, sentence = max(best)
            return sentence, 100.0 * index / max(1, n - 1)
    return None


def passage_sentences(docs: list[StoredDocument], n: int,
                      rng: random.Random) -> list[tuple[str, StoredDocument, float]]:
    """`n` distinctive sentences, deduplicated, taken round-robin over randomly ordered
    documents at depths spread over each."""
    usable = [d for d in docs if d.chunks]
    if not usable:
        return []
    order = rng.sample(usable, len(usable))
    df = document_frequency(usable)
    chunks = sum(len(d.chunks) for d in usable)
    taken: set[str] = set()
    picked: list[tuple[str, StoredDocument, float]] = []
    for i in range(n * 3):  # documents with no fair sentence are skipped
        if len(picked) == n:
            break
        doc = order[i % len(order)]
        depth = 100.0 * ((i // len(order)) * 0.618 + rng.random() * 0.1) % 100.0
        found = pick_sentence(doc, depth, df, chunks, taken)
        if found is not None:
            taken.add(normalize(found[0]))
            picked.append((found[0], doc, found[1]))
    return picked


def masked_probe(sentence: str, doc: StoredDocument, depth: float,
                 df: Counter[str]) -> Probe:
    """The sentence with its rarest content words masked, as a fill-in question."""
    words = sorted(set(content_words(sentence)), key=lambda w: (df[w], -len(w), w))
    hidden = words[:MASKED_WORDS]
    masked = sentence
    for w in hidden:
        masked = re.sub(rf"\b{re.escape(w)}\b", MASK, masked, flags=re.IGNORECASE)
    question = f'Which words are missing from "{masked}"?'
    return Probe("passage", question, sentence, hidden[0], doc.entry.source, round(depth, 1),
                 "mask")


QUESTION_PROMPT = (
    "Write one question that the sentence below answers, and its short answer (a few words "
    "copied from the sentence). Do not copy the sentence into the question.\n"
    "Reply in exactly two lines:\nQuestion: ...\nAnswer: ...\n\nSentence: {sentence}")


def parse_question(reply: str) -> tuple[str, str] | None:
    q = re.search(r"question\s*:\s*(.+)", reply, re.IGNORECASE)
    a = re.search(r"answer\s*:\s*(.+)", reply, re.IGNORECASE)
    if not q or not a:
        return None
    return q.group(1).strip(), a.group(1).strip().strip(".\"'")


def answerable(question: str, answer: str, sentence: str) -> bool:
    """The answer is in the sentence and not in the question, and the question does not
    copy the sentence (it holds under 80% of the sentence's content words)."""
    if not question.endswith("?") or not answer or len(answer.split()) > 8:
        return False
    if not contains(sentence, answer) or contains(question, answer):
        return False
    words = set(content_words(sentence))
    shared = words & set(content_words(question))
    return len(shared) < 0.8 * len(words)


def llm_probe(sentence: str, doc: StoredDocument, depth: float, ask: Any) -> Probe | None:
    """The served model's question about the sentence when it passes `answerable`, else
    None. `ask(prompt) -> reply`."""
    parsed = parse_question(ask(QUESTION_PROMPT.format(sentence=sentence)))
    if parsed is None or not answerable(parsed[0], parsed[1], sentence):
        return None
    return Probe("passage", parsed[0], sentence, parsed[1], doc.entry.source, round(depth, 1),
                 "llm")
