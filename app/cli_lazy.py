"""A command group whose listed commands load their module only when one is run or its help
is shown: `rag retrieve` need not import what `rag eval` needs (the evaluation imports the
OpenAI SDK, the ingest pipeline and the citation check, ~1 s on every command)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from app.cli_help import tidy

# command name → a function that imports the command's module and adds that one command to
# the Typer app it is given
LAZY_COMMANDS: dict[str, Callable[[typer.Typer], None]] = {}


def lazy_command(name: str, register: Callable[[typer.Typer], None]) -> None:
    """Lists `name` in the group; `register` runs only when it is invoked or its help shown."""
    LAZY_COMMANDS[name] = register


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
    LAZY_COMMANDS[name](holder)
    command = typer.main.get_command(holder)
    command.name = name
    tidy(command)
    return command
