"""Budget arithmetic: min(requested, window) − answer reserve − prompt and template tokens."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Budget:
    requested: int
    context_window: int
    answer_reserve: int
    prompt_tokens: int
    available: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def compute_budget(requested: int, context_window: int, answer_reserve: int,
                   prompt_tokens: int) -> Budget:
    available = min(requested, context_window) - answer_reserve - prompt_tokens
    return Budget(requested, context_window, answer_reserve, prompt_tokens, max(0, available))
