"""The early size check of a conversation, with the real Llama 3 tokenizer: slices join back
to the text, their counts add up to the whole's, and counting stops once past the limit."""

from __future__ import annotations

from typing import Any

import pytest

from app.history import SLICE_CHARS, check_conversation, slices, tokens_past
from app.llm import PromptTooLongError

TEXT = " ".join(f"word{i % 97} keeps the lamp lit" for i in range(12_000))  # ~400k chars


def test_slices_join_back_and_count_like_the_whole(counter: Any) -> None:
    parts = list(slices(TEXT[:200_000]))
    assert "".join(parts) == TEXT[:200_000] and all(len(p) <= SLICE_CHARS for p in parts)
    whole = counter.count(TEXT[:200_000])
    assert sum(counter.count(p) for p in parts) - (len(parts) - 1) <= whole
    assert tokens_past(counter, [TEXT[:200_000]], whole) is None  # fits exactly
    assert tokens_past(counter, [TEXT[:200_000]], whole - 50) is not None


def test_counting_stops_past_the_limit(counter: Any) -> None:
    counted = tokens_past(counter, ["a question", TEXT, TEXT], 8_000)
    assert counted is not None and 8_000 < counted <= 8_000 + counter.count(TEXT[:SLICE_CHARS])
    with pytest.raises(PromptTooLongError, match="window is 8,192: shorten the conversation"):
        check_conversation(counter, ["and then?", TEXT], 8_192, 512)
    check_conversation(counter, ["and then?", TEXT[:1_000]], 8_192, 512)  # fits: no error
