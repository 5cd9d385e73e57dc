""".env.example documents every variable the compose files read, with their defaults, and no
secret lives in it or in the compose files."""

from __future__ import annotations

import re

import pytest
from deploy_helpers import CLUSTER, COMPOSE, ENV_EXAMPLE, load_yaml, pass_through, variables

LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
TOKEN_PREFIX = re.compile(r"(hf|sk|ghp|gho|github_pat|xox[abp])[-_][A-Za-z0-9_-]{16,}")


def looks_secret(word: str) -> bool:
    """A known token prefix, long hex, or a long random mix of lower, upper case and digits."""
    if TOKEN_PREFIX.fullmatch(word) or re.fullmatch(r"[0-9a-f]{32,}", word):
        return True
    return (len(word) >= 24 and re.fullmatch(r"[A-Za-z0-9+/_-]+", word) is not None
            and all(re.search(c, word) for c in ("[a-z]", "[A-Z]", "[0-9]")))
COMPOSE_CLI = {"COMPOSE_PROFILES"}  # read by docker compose itself, not by the files


def documented(text: str) -> dict[str, tuple[bool, str]]:
    """name -> (active, value) for each `NAME=value` or `# NAME=value` line."""
    out: dict[str, tuple[bool, str]] = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            out.setdefault(m.group("name"), (m.group("comment") is None, m.group("value")))
    return out


def used(text: str) -> dict[str, set[str | None]]:
    """Variables a compose file reads: ${VAR...} and names passed through without a value."""
    found = variables(text)
    for name in pass_through(load_yaml(text)):
        found.setdefault(name, set()).add(None)
    return found


@pytest.fixture(scope="module")
def env_example() -> dict[str, tuple[bool, str]]:
    return documented(ENV_EXAMPLE.read_text())


def test_every_variable_is_documented(env_example: dict[str, tuple[bool, str]]) -> None:
    for path in (COMPOSE, CLUSTER):
        missing = set(used(path.read_text())) - set(env_example)
        assert not missing, f"{path.name} reads {sorted(missing)}, which .env.example does not document"


def test_nothing_documented_is_unused(env_example: dict[str, tuple[bool, str]]) -> None:
    read = set(used(COMPOSE.read_text())) | set(used(CLUSTER.read_text())) | COMPOSE_CLI
    assert not set(env_example) - read, f"stale in .env.example: {sorted(set(env_example) - read)}"


def test_documented_defaults_are_the_compose_defaults(env_example: dict[str, tuple[bool, str]]) -> None:
    defaults = variables(COMPOSE.read_text())
    for name, (_active, value) in env_example.items():
        given = {d for d in defaults.get(name, set()) if d is not None}
        if given:
            assert given == {value}, f"{name}: .env.example says {value!r}, docker-compose.yml {given}"


def test_only_profiles_and_empty_secrets_are_set(env_example: dict[str, tuple[bool, str]]) -> None:
    active = {n: v for n, (a, v) in env_example.items() if a}
    assert active.keys() == {"COMPOSE_PROFILES", "HF_TOKEN"}
    assert active["HF_TOKEN"] == ""


@pytest.mark.parametrize("path", [ENV_EXAMPLE, COMPOSE, CLUSTER], ids=lambda p: p.name)
def test_no_secret_values(path: object) -> None:
    text = path.read_text()  # type: ignore[attr-defined]
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m and SECRET_NAME.search(m.group("name")) and not m.group("comment"):
            assert m.group("value") == "", f"{m.group('name')} has a value in {path}"
        for word in re.findall(r"[^\s\"'=:,\[\]{}]+", line):
            if word.startswith(("http", "meta-llama/", "./", "/")):
                continue
            assert not looks_secret(word), f"looks like a secret in {path}: {word[:8]}..."


def test_secret_settings_in_compose_come_from_env() -> None:
    for path in (COMPOSE, CLUSTER):
        model = load_yaml(path)
        for name, service in model["services"].items():
            for key, value in (service.get("environment") or {}).items():
                if SECRET_NAME.search(key):
                    assert value is None or re.fullmatch(r"\$\{[A-Z0-9_]+:-\}", value), \
                        f"{path.name}: {name}.{key} = {value!r}"


def test_secret_detector_detects() -> None:
    assert looks_secret("hf_" + "a1B2" * 8)
    assert looks_secret("Zx81kP0qLm3NvB7tRw2YhC5u")
    assert looks_secret("9f86d081884c7d659a2feaa0c55ad015")
    assert not looks_secret("RAG_VLLM__GPU_MEMORY_UTILIZATION")
    assert not looks_secret("Llama-3.1-8B-Instruct")
