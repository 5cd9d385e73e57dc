"""How `rag --help` reads: paragraphs flow to the terminal's width (docstrings are wrapped
for the source, not for the screen), a command's line in a list is its first sentence, and
flags show no `<bool>` value they do not take, and values are named as argparse and git name
them (`--budget BUDGET`, `QUESTION`), not by Python type (`<int>`, `{question}`)."""

from __future__ import annotations

import inspect
import re
from typing import Any

_SOFT_BREAK = re.compile(r"(?<!\n)\n(?!\n)")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")


def flowing(text: str) -> str:
    """`text` dedented, with the line breaks inside each paragraph made spaces."""
    return _SOFT_BREAK.sub(" ", inspect.cleandoc(text))


def first_sentence(text: str) -> str:
    paragraph = flowing(text).split("\n\n", 1)[0]
    match = _FIRST_SENTENCE.match(paragraph)
    return match.group(1) if match else paragraph


def tidy(command: Any) -> None:
    """Applies the rules above to `command` (the click command typer built: typer carries
    its own click, so this goes by attributes) and every command under it."""
    if command.help:
        command.help = flowing(command.help)
        command.short_help = first_sentence(command.help)
    if command.epilog:
        command.epilog = flowing(command.epilog)
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None and param.name:
            param.metavar = param.name.upper()
        if getattr(param, "param_type_name", "") == "argument" and hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None  # its name says it (QUESTION, PATH)
        if getattr(param, "help", None):
            param.help = flowing(param.help)
    _flag_help_option(command)
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)


def _flag_help_option(command: Any) -> None:
    """--help is made anew for each run, so it is tidied as it is made."""
    make = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
