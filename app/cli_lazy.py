"""A command group whose listed commands load their module only when one is run or its help
is shown: `rag retrieve` need not import what `rag eval` needs (the evaluation imports the
OpenAI SDK, the ingest pipeline and the citation check, ~1 s on every command)."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from app.cli_help import tidy

# command name → module with `register(app: typer.Typer)` that adds that one command
LAZY_COMMANDS = {"eval": "app.cli_eval"}


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        eager = super().list_commands(ctx)
        return [*eager, *(name for name in LAZY_COMMANDS if name not in eager)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            self.commands[cmd_name] = _load(cmd_name)
        return super().get_command(ctx, cmd_name)


def _load(name: str) -> Any:
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    importlib.import_module(LAZY_COMMANDS[name]).register(holder)
    command = typer.main.get_command(holder)
    command.name = name
    tidy(command)
    return command
