"""The LLM client and the facts of the model it serves (serving/served.py's Served), found
once: asked of the server, or the settings while it cannot be reached."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from app.llm import LLMClient, ModelInfo
from core.errors import RagError
from core.settings import Settings
from serving.served import Served, describe


class ServedModel:
    FALLBACK_S = 10.0  # how long an unreachable LLM is not asked again for its window

    def __init__(self, settings: Settings, llm: LLMClient | None = None):
        self.settings = settings
        self._llm = llm
        self._start = threading.Lock()  # two first requests must not start two servers
        self._served: Served | None = None
        self._fallback: tuple[float, Served] | None = None

    def start(self) -> LLMClient:
        """The client, made on the first call. Without llm.url this starts our llama.cpp
        server (which takes a while): concurrent first calls wait for one start."""
        with self._start:
            if self._llm is None:
                s = self.settings.llm
                urls = list(s.urls) if s.urls else ([s.url] if s.url else [])
                if not urls:  # the embedded default: our llama.cpp server on this machine
                    from serving.llamacpp import ensure_running

                    urls = [ensure_running(self.settings.cpu_server)]
                self._llm = LLMClient(urls, s.api_key, s.model, s.timeout_s,
                                      s.connect_timeout_s, s.retries)
            return self._llm

    def client(self) -> LLMClient | None:
        """The client if `start` made one (nothing is started)."""
        return self._llm

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()

    def served(self, require_server: bool = True) -> Served:
        """The served model, its window, tokenizer and template. Without `require_server`
        an unreachable server falls back to the configured window (retrieval needs no LLM)."""
        if self._served is not None:
            return self._served
        fallback = self._fallback
        if not require_server and fallback and time.monotonic() - fallback[0] < self.FALLBACK_S:
            return fallback[1]
        info: ModelInfo | None = None
        try:
            info = self.start().model_info()
        except RagError:
            if require_server:
                raise
        if info is None:  # the LLM is down: retrieval goes on with the configured window
            served = describe(self.settings, None, None, None)
            self._fallback = (time.monotonic(), served)
            return served
        self._served = describe(self.settings, info.id, info.context_window, info.url)
        return self._served

    def smaller_window(self, served: Served, window: int) -> Served:
        """The server refused the prompt and said its real window: kept from now on."""
        self._served = replace(served, context_window=window, window_source="server")
        return self._served
