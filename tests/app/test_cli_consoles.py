"""The command line's consoles, made on first use, work everywhere rich takes a Console."""

from __future__ import annotations

import io

from rich.progress import Progress

from app.cli_consoles import deferred_console


def test_a_deferred_console_draws_a_live_progress_bar() -> None:
    """rich's Live renders inside `with console:` (a special method, which __getattr__ does
    not serve): `rag ingest` on a terminal failed there before the console said how."""
    buffer = io.StringIO()
    console = deferred_console(file=buffer, force_terminal=True, width=60)
    with Progress(console=console) as progress:
        task = progress.add_task("files", total=2)
        progress.advance(task, 2)
    with console:
        console.print("after the bar")
    assert "files" in buffer.getvalue() and "after the bar" in buffer.getvalue()
