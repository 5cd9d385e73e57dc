"""The closed sets of choices a request can make, defined once: settings validate them, the
API schemas and `rag` options accept them, /v1/config lists them for the UI.

StrEnum members are their strings (`Layout.EDGES == "edges"`, JSON writes "edges"), so
payloads, ledgers and comparisons with plain strings are unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class Layout(StrEnum):
    """Passage order in the context."""

    DOCUMENT = "document"  # grouped by document, in original order
    RELEVANCE = "relevance"  # best first
    EDGES = "edges"  # best evidence at the start and the end


class SearchMode(StrEnum):
    """Which search finds the candidates."""

    HYBRID = "hybrid"  # dense + keyword, fused by reciprocal rank
    DENSE = "dense"
    KEYWORD = "keyword"


class ContextMode(StrEnum):
    """Whole documents or searched passages."""

    AUTO = "auto"  # whole documents when all selected fit, else search
    FULL = "full"  # whole documents, as many as fit
    RETRIEVE = "retrieve"  # always search


def names(choices: type[StrEnum]) -> list[str]:
    """The choices' values, in definition order (the first is the default)."""
    return [c.value for c in choices]


# The chat template a model reads its prompt in (llm.chat_format adds "auto": the model's own).
ChatFormat = Literal["llama3", "chatml"]
