"""Reads the deployment files as data: compose files (merged the way `docker compose -f a -f b`
merges them, variables resolved with their defaults) and Dockerfiles (instructions)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings
from serving.compose import resolve

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CLUSTER = ROOT / "docker-compose.cluster.yml"
ENV_EXAMPLE = ROOT / ".env.example"


class ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus compose's `!override` / `!reset` merge tags."""


def _tagged(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.SequenceNode):
            value: Any = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type]
        return Tagged(tag, value)

    return construct


class Tagged:
    def __init__(self, tag: str, value: Any):
        self.tag, self.value = tag, value


for _tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(_tag, _tagged(_tag))


def load_yaml(source: Path | str) -> Any:
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return yaml.load(text, Loader=ComposeLoader)  # noqa: S506 - a safe loader subclass


# Sequences compose replaces in an override instead of appending to.
_REPLACED = {"command", "entrypoint", "test"}


def merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of an override file onto a base one (the parts these files use)."""
    if isinstance(over, Tagged):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v, k) if k in base else (v.value if isinstance(v, Tagged) else v)
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED:
        return base + [x for x in over if x not in base]
    return over


def compose(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The merged compose model of `files`, every variable resolved (defaults when env is empty)."""
    model: Any = {}
    for f in files or (COMPOSE,):
        model = merge(model, load_yaml(f))
    return resolve(model, env or {})


def enabled(model: dict[str, Any], profiles: set[str]) -> dict[str, Any]:
    """The services `docker compose --profile P... up` starts."""
    return {name: s for name, s in model["services"].items()
            if not s.get("profiles") or set(s["profiles"]) & profiles}


def variables(text: str) -> dict[str, set[str | None]]:
    """Every ${VAR...} in a file's text (comments excluded) and the defaults given for it."""
    found: dict[str, set[str | None]] = {}
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        for m in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", line):
            found.setdefault(m.group(1), set()).add(m.group(2))
    return found


def pass_through(model: dict[str, Any]) -> set[str]:
    """Environment names given without a value: compose passes them from the shell or .env."""
    names: set[str] = set()
    for s in model["services"].values():
        env = s.get("environment") or {}
        names |= {k for k, v in env.items() if v is None}
    return names


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    out = []
    for line in joined:
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Instructions split per build stage (each list starts with its FROM)."""
    out: list[list[tuple[str, str]]] = []
    for instr, args in instructions:
        if instr == "FROM":
            out.append([])
        if out:
            out[-1].append((instr, args))
    return out


def tokens(command: str) -> list[str]:
    """A shell command's words, with ; && || | > as words of their own (quotes respected)."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def pip_installs(instructions: list[tuple[str, str]]) -> list[list[str]]:
    """The argument lists of every `pip install` in RUN instructions."""
    found = []
    for instr, args in instructions:
        if instr != "RUN":
            continue
        words: list[str] = []
        for word in [*tokens(args), ";"]:
            if word not in {";", "&&", "||", "|"}:
                words.append(word)
                continue
            if words[:2] == ["pip", "install"] or words[1:4] == ["-m", "pip", "install"]:
                found.append(words[words.index("install") + 1:])
            words = []
    return found


def settings_field(name: str) -> Any:
    """The settings field behind RAG_SECTION__FIELD (or RAG_FIELD), None when there is none."""
    parts = name.removeprefix("RAG_").lower().split("__")
    fields: Any = Settings.model_fields
    info = None
    for part in parts:
        if fields is None or part not in fields:
            return None
        info = fields[part]
        ann = info.annotation
        fields = ann.model_fields if isinstance(ann, type) and hasattr(ann, "model_fields") else None
    return info
