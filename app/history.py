"""An early check of a conversation's size: counted in slices, it stops as soon as the
window is passed, so megabytes of history are refused after the first window's worth of
tokens instead of being counted whole (and searched with) first."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from app.llm import PromptTooLongError

SLICE_CHARS = 16_384


def slices(text: str, size: int = SLICE_CHARS) -> Iterator[str]:
    """`text` in pieces of at most `size` characters, cut before a space where there is one
    in the second half of a piece (the tokenizers split words there too, so the pieces'
    counts add up to the whole's, give or take a token per cut)."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        cut = cut if cut > start else start + size
        yield text[start:cut]
        start = cut
    yield text[start:]


def tokens_past(counter: Any, texts: Iterable[str], limit: int) -> int | None:
    """The tokens counted when `texts` have more than `limit` (the count stops there);
    None when they fit. A cut between slices may add a token: each cut counts one less."""
    total = 0
    for text in texts:
        for i, piece in enumerate(slices(text)):
            total += counter.count(piece) - (1 if i else 0)
            if total > limit:
                return total
    return None


def check_conversation(counter: Any, texts: list[str], window: int, reserve: int) -> None:
    """PromptTooLongError when `texts` (question and history) leave no room in `window` for
    the answer `reserve`."""
    counted = tokens_past(counter, texts, window - reserve)
    if counted is not None:
        raise PromptTooLongError(
            f"the question and history need over {counted:,} tokens and the answer "
            f"{reserve:,} more, but the model's window is {window:,}: shorten the "
            "conversation or the question", window)
