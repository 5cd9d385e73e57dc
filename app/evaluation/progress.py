"""What an evaluation reports while it works, apart from the evaluation itself so that its
readers (the CLI's bar, the API's job) need not load the evaluation's LLM client."""

from __future__ import annotations


class EvalProgress:
    """What an evaluation reports while it works; the CLI draws it, the API job keeps it."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...
