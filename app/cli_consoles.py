"""The command line's consoles, made on first use: a command that prints through neither
(`rag retrieve --json` writes its JSON with print) never imports rich (~0.07 s of CPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console


class _Deferred:
    """Stands for a rich Console; the first attribute asked for makes it."""

    def __init__(self, **options: Any):
        self._options = options
        self._console: Any = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    # Special methods are looked up on the type, not through __getattr__: rich's Live
    # (the ingest progress) renders inside `with console:`.
    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._made().__exit__(*exc)


def deferred_console(**options: Any) -> Console:
    return cast("Console", _Deferred(**options))
