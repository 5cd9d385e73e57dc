"""The served model's facts the context is packed for: its window (and where that number
came from), its tokenizer and its chat template. Retrieval packs for a `Served`; the answer
service finds one by asking the LLM server and falls back to the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.choices import ChatFormat
from core.errors import SettingsError
from core.settings import Settings
from ingest.tokenizer import load_gguf_counter, load_tokenizer


@dataclass(frozen=True)
class Served:
    """What the packer needs to know about the model that will read the context."""

    model: str
    context_window: int
    window_source: str  # server | settings | cpu_server
    counter: Any
    chat_format: ChatFormat
    url: str | None


def uses_cpu_default(settings: Settings) -> bool:
    """No LLM URL: the embedded default, our llama.cpp server on this machine."""
    return not settings.llm.url and not settings.llm.urls


def is_cpu_model(settings: Settings, served_id: str) -> bool:
    """The served model is the cpu_server's GGUF (e.g. the compose cpu profile)."""
    from serving.llamacpp import model_path

    try:
        return served_id == model_path(settings.cpu_server).stem
    except SettingsError:
        return False


def choose_counter(settings: Settings, served_id: str | None) -> tuple[Any, ChatFormat]:
    """The tokenizer and chat format for the served model. auto: the CPU server's GGUF
    tokenizer when that model is the one served (our embedded default, or the same GGUF
    behind a URL), else Llama 3.1's."""
    spec = settings.llm.tokenizer
    if spec == "auto":
        from serving.llamacpp import model_path

        spec = "llama3"
        if uses_cpu_default(settings) or (served_id and is_cpu_model(settings, served_id)):
            spec = str(model_path(settings.cpu_server))
    if spec == "llama3":
        counter: Any = load_tokenizer(settings.tokenizer.path)
        fmt: ChatFormat = "llama3"
    elif spec.endswith(".gguf"):
        counter = load_gguf_counter(str(Path(spec).expanduser()))
        fmt = counter.chat_format
    else:
        counter = load_tokenizer(str(Path(spec).expanduser()))
        fmt = "llama3"
    chosen = settings.llm.chat_format
    return counter, (fmt if chosen == "auto" else chosen)


def describe(settings: Settings, model_id: str | None, reported_window: int | None,
             url: str | None) -> Served:
    """The Served for what the LLM server said (model id, window, URL; all None when it
    could not be reached)."""
    counter, fmt = choose_counter(settings, model_id)
    if reported_window:
        window, source = reported_window, "server"
    elif settings.llm.context_window:
        window, source = settings.llm.context_window, "settings"
    elif uses_cpu_default(settings) or (model_id is not None and is_cpu_model(settings, model_id)):
        # Our llama.cpp server (llama-cpp-python reports no window): the cpu_server
        # settings it was started with; a smaller real window is learned on refusal.
        window, source = settings.cpu_server.n_ctx, "cpu_server"
    else:
        window, source = settings.retrieval.context_window, "settings"
    model = model_id if model_id is not None else (settings.llm.model or "unknown")
    return Served(model, window, source, counter, fmt, url)
