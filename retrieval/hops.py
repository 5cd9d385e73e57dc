"""Follow-up hops: the names that assignments in the best hits tie to the question, searched
next.

"Which variables hold 4172?" finds the assignment that names the value ("VAR ABCDE = 4172."),
not the ones that pass it on ("VAR FGHIJ = VAR ABCDE."): those share no word with the
question, only with the names found (bench/multi_needle.py, task vt; config files and code
read the same way). A statement with `=` or `:=` that holds the most selective of the
question's distinctive tokens gives the other distinctive tokens it holds; they are the next
search, and the statements those find give the next names.

Pure text functions; the searches are the retriever's (retrieval/service.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_NAMES = 4  # names searched together in one hop; more make a query that finds none well
MAX_STATEMENT_CHARS = 200  # longer "statements" are prose or table rows, not assignments

_STATEMENT_END = re.compile(r"(?<=[.;!?])\s+|\n")
_ASSIGN = re.compile(r"(?<![=<>!:])(?::=|=)(?!=)")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d[\d,]*(?:\.\d+)?")


def distinctive(token: str) -> bool:
    """A token that names one thing rather than a word of prose: a number, an upper-case
    name (ABCDE, VAR), or an identifier with an underscore, digits or an inner capital."""
    if len(token) < 2:
        return False
    if token[0].isdigit() or "_" in token or any(ch.isdigit() for ch in token):
        return True
    return token.isupper() or (token[0].islower() and any(ch.isupper() for ch in token))


def tokens(text: str) -> list[str]:
    return [t.rstrip(",") for t in _TOKEN.findall(text)]


def anchors(question: str) -> set[str]:
    """The question's distinctive tokens: what an assignment must hold to be followed."""
    return {t for t in tokens(question) if distinctive(t)}


def assignments(text: str) -> Iterable[str]:
    """The statements of `text` (sentences or lines) that assign with `=` or `:=`."""
    if "=" not in text:  # most passages: no statement to split out
        return
    for statement in _STATEMENT_END.split(text):
        if len(statement) <= MAX_STATEMENT_CHARS and _ASSIGN.search(statement):
            yield statement


def assigned_names(texts: Iterable[str], anchors_: set[str], known: set[str]) -> list[str]:
    """The distinctive tokens, not in `known`, of the assignments in `texts` that hold the
    most selective of `anchors_` (the one the fewest assignments hold: the value 4172, not
    the VAR of every line); in order of appearance, each once."""
    if not anchors_:
        return []
    statements = [held for text in texts for held in
                  ([t for t in tokens(s) if distinctive(t)] for s in assignments(text))
                  if anchors_.intersection(held)]
    holders: dict[str, int] = {}
    for held in statements:
        for a in anchors_.intersection(held):
            holders[a] = holders.get(a, 0) + 1
    if not holders:
        return []
    rarest = min(holders.values())
    found: dict[str, None] = {}
    for held in statements:
        if min(holders[a] for a in anchors_.intersection(held)) == rarest:
            found.update((t, None) for t in held if t not in known)
    return list(found)
