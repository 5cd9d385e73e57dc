"""Shared fixtures: the real tokenizer and the real MiniLM embedder, each loaded once per
session, settings on a tmp data dir, and a helper that ingests with the shared embedder.

Nothing here is mocked: stores are real embedded Qdrant Edge shards under tmp_path.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.network import loopback_only
from support.ports import free_port

from core.settings import Settings, load_settings
from ingest.tokenizer import TokenCounter, load_tokenizer

# Small chunks, so the few sentences of a fixture document still make several chunks.
SMALL_CHUNKS = {"size": 64, "overlap": 8}


@pytest.fixture(scope="session", autouse=True)
def _hermetic_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No RAG_* variable of the caller's shell, and no ./rag.yaml, leaks into the tests."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("RAG_"):
                mp.delenv(key)
        if Path("rag.yaml").is_file():
            mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


_REAL_CONNECT = socket.socket.connect, socket.socket.connect_ex


def pytest_configure(config: pytest.Config) -> None:
    """Sockets of this process connect to loopback only, from collection on (an import that
    reached out would be caught too): anything else raises NetworkRefused naming the address.
    Processes a test starts (servers, the `rag` command) are not covered."""
    socket.socket.connect = loopback_only(_REAL_CONNECT[0])  # type: ignore[method-assign]
    socket.socket.connect_ex = loopback_only(_REAL_CONNECT[1])  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.socket.connect, socket.socket.connect_ex = _REAL_CONNECT  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    """The shipped Llama 3 tokenizer (lru-cached by load_tokenizer)."""
    return load_tokenizer()


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The shipped all-MiniLM-L6-v2 embedder, loaded once per session (about 5 s)."""
    from ingest.embedder import Embedder

    return Embedder(load_settings().embedding)


def _make_settings(data_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("chunking", dict(SMALL_CHUNKS))
    return load_settings(data_dir=data_dir, **overrides)


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., Settings]:
    """make_settings(data_dir, **overrides): settings on `data_dir`, small chunks unless
    `chunking` is given."""
    return _make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose embedded store lives under this test's tmp_path (small chunks)."""
    return _make_settings(tmp_path / "data")


@pytest.fixture
def store(settings: Settings) -> Iterator[Any]:
    """The embedded Qdrant Edge store of `settings`, closed after the test."""
    from ingest.store import open_store

    s = open_store(settings)
    try:
        yield s
    finally:
        s.close()


IngestFn = Callable[..., Any]


@pytest.fixture
def ingest_paths(settings: Settings, embedder: Any) -> IngestFn:
    """ingest_paths(paths, store=None, prune=False, settings=None) -> IngestReport, with the
    session embedder; opens and closes the store itself unless one is given."""
    from ingest.pipeline import ingest

    def run(paths: list[Path], store: Any = None, prune: bool = False,
            settings_: Settings | None = None) -> Any:
        return ingest(settings_ or settings, list(paths), prune=prune, store=store,
                      embedder=embedder)

    return run


@pytest.fixture(scope="session")
def llm_server() -> Iterator[Any]:
    """A real llama.cpp server (llama-cpp-python[server]) with the shipped SmolLM2 GGUF on a
    free loopback port, started once per session. Yields the RunningServer (`.url` ends in
    /v1, `.stop()`); its CPUServerSettings are in `.settings`."""
    from core.settings import CPUServerSettings
    from serving import llamacpp

    cfg = CPUServerSettings(port=free_port(), threads=1, n_ctx=8192)
    server = llamacpp.start(cfg)
    server.settings = cfg  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
