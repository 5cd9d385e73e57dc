"""Keyword variants of a question that asks for several things at once, without an LLM.

"What are the magic numbers for amber-falcon, lucid-heron, opal-quarry and sable-canyon?"
asks four questions; one search for all four ranks the passages that match many of its words
first, and the passage for any one key competes with the other keys' and with their
distractors. Searching each item of the list on its own ("... for lucid-heron?") puts each
item's best passage at the top of one result list (bench/multi_needle.py, task mq).
"""

from __future__ import annotations

import re

MAX_ITEMS = 8  # a longer list is searched as the question alone

# Three or more short items after a preposition: "for A, B and C", "about A, B, C, or D" (a
# pair "A and B" is too often one thing: "salt and pepper"; without the preposition, "the
# value 42, directly or through a chain" would read as a list). Items are 1-4 words; the
# middle ones, between commas, are exact, and fix how many words the first and the last take.
PREPOSITIONS = frozenset({"about", "among", "at", "between", "by", "for", "from", "in", "into",
                          "of", "on", "over", "to", "under", "with"})
_ITEM = r"[\w'’-]+(?: [\w'’-]+){0,3}"
_LIST = re.compile(rf"(?P<items>{_ITEM}(?:, {_ITEM})+,? (?:and|or) {_ITEM})")


def list_items(question: str) -> tuple[int, int, list[str]] | None:
    """(start, end, items) of the first list of three or more items in `question`."""
    for m in _LIST.finditer(question):
        head, last = re.split(r",? (?:and|or) ", m.group("items"), maxsplit=1)
        parts = [p.strip() for p in head.split(",")]
        middle = parts[1:]
        if not middle or not all(middle):
            continue
        width = max(len(p.split()) for p in middle)
        first_words = parts[0].split()
        first = " ".join(first_words[-width:])
        last_words = last.split()
        last_item = " ".join(last_words[:width])
        start = m.start() + len(parts[0]) - len(first)
        before = question[:start].split()
        if not before or before[-1].lower() not in PREPOSITIONS:
            continue
        end = m.end() - (len(last) - len(last_item))
        items = [first, *middle, last_item]
        if len(items) > MAX_ITEMS or len(set(items)) < len(items):
            return None
        return start, end, items
    return None


def keyword_variants(question: str) -> list[str]:
    """One question per item of the question's list (the list replaced by the item), or
    nothing when it has no list."""
    found = list_items(question)
    if found is None:
        return []
    start, end, items = found
    return [question[:start] + item + question[end:] for item in items]
