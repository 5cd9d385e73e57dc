"""The client of OpenAI-compatible chat servers (vLLM, llama.cpp, Ollama, TGI, SGLang...): the
official `openai` SDK per replica, with our replica pool in front of it.

One client may hold several replica URLs: requests go round robin over the replicas that are
up; a replica that cannot be reached is set aside for a cool-down and the request moves on
to the next, so one stopped replica costs no failed answers. The last replica left is
retried by the SDK itself (`retries`, with its backoff). What is ours: the pool, the served
model and its window (`/v1/models`), and turning the servers' refusals into messages.

The pool is the fallback for a plain list of URLs. In front of vLLM replicas, a cache-aware
router (serving/router.py: vllm-router) is better: it keeps a conversation on the replica that
holds its prefix, where round robin makes every replica prefill every context again.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types import Model
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from core.errors import RagError


class LLMError(RagError):
    """The LLM server answered with an error."""

    exit_code = 3


class LLMUnavailableError(LLMError):
    """No LLM server could be reached."""


class PromptTooLongError(LLMError):
    """The prompt (plus the answer reserve) does not fit the served context window."""

    def __init__(self, message: str, window: int | None = None):
        super().__init__(message)
        self.window = window  # the server's window, when its message says it


@dataclass(frozen=True)
class ModelInfo:
    id: str
    context_window: int | None  # max_model_len when the server reports it
    url: str


@dataclass
class Delta:
    """One piece of a streamed answer; the last one carries usage (when the server sends it)."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


@dataclass
class _Replica:
    url: str
    sdk: openai.OpenAI
    down_until: float = 0.0
    failures: int = 0


_TOO_LONG = re.compile(
    r"(maximum context length|exceed(s|ed)? (the )?context window|context length exceeded|"
    r"too many tokens|prompt is too long|input is too long|Requested tokens \(\d+\) exceed)",
    re.IGNORECASE)


# vLLM and llama-cpp-python: "This model's maximum context length is 8192 tokens. ..."
_WINDOW = re.compile(r"(?:maximum context length is|context window of|max_model_len(?: is|=)?)\s*(\d+)",
                     re.IGNORECASE)


@dataclass
class LLMClient:
    urls: list[str]
    api_key: str | None = None
    model: str | None = None
    timeout_s: float = 300.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    cooldown_s: float = 10.0
    _replicas: list[_Replica] = field(init=False)
    _next: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _info: ModelInfo | None = field(init=False, default=None)
    last_url: str | None = field(init=False, default=None)  # the replica of the last answer

    def __post_init__(self) -> None:
        if not self.urls:
            raise RagError("llm.url: no LLM server URL")
        self._replicas = [_Replica(u.rstrip("/"), self._sdk(u.rstrip("/"))) for u in self.urls]

    def _sdk(self, url: str) -> openai.OpenAI:
        # The SDK insists on a key; a server started without one ignores the header.
        # max_retries=0: the pool chooses where the SDK retries (see _attempts).
        return openai.OpenAI(
            base_url=url, api_key=self.api_key or "unused", max_retries=0,
            timeout=openai.Timeout(self.timeout_s, connect=self.connect_timeout_s))

    def close(self) -> None:
        for replica in self._replicas:
            replica.sdk.close()

    # -- replica choice -------------------------------------------------------------------
    def _order(self) -> list[_Replica]:
        """Replicas to try for one request: the up ones in round-robin order, then the ones
        cooling down (a last resort, soonest back first)."""
        with self._lock:
            n = len(self._replicas)
            start = self._next
            self._next = (self._next + 1) % n
            rotated = [self._replicas[(start + i) % n] for i in range(n)]
        now = time.monotonic()
        up = [r for r in rotated if r.down_until <= now]
        down = sorted((r for r in rotated if r.down_until > now), key=lambda r: r.down_until)
        return up + down

    def _mark(self, replica: _Replica, ok: bool) -> None:
        with self._lock:
            if ok:
                replica.failures = 0
                replica.down_until = 0.0
            else:
                replica.failures += 1
                replica.down_until = time.monotonic() + self.cooldown_s * min(replica.failures, 6)

    def _attempts(self) -> Iterator[tuple[_Replica, openai.OpenAI]]:
        """Each replica once, in `_order`; the last one with the SDK's retries."""
        order = self._order()
        for i, replica in enumerate(order):
            last = i == len(order) - 1
            yield replica, replica.sdk.with_options(max_retries=self.retries) if last else replica.sdk

    def _unavailable(self, last: Exception | None) -> LLMUnavailableError:
        where = ", ".join(r.url for r in self._replicas)
        cause = (last.__cause__ or last) if last else None
        why = f" ({type(cause).__name__}: {cause})" if cause else ""
        return LLMUnavailableError(f"the LLM server is not reachable at {where}{why}; start it "
                                   "(rag serve cpu | rag serve vllm) or fix llm.url")

    # -- models -----------------------------------------------------------------------------
    def model_info(self, refresh: bool = False) -> ModelInfo:
        """The model to request and its context window (vLLM reports max_model_len)."""
        if self._info is not None and not refresh:
            return self._info
        last: Exception | None = None
        for replica, sdk in self._attempts():
            try:
                data = sdk.models.list().data
            except openai.APIConnectionError as exc:
                self._mark(replica, False)
                last = exc
                continue
            except openai.APIStatusError as exc:
                raise _refusal(exc) from None
            self._mark(replica, True)
            self._info = self._choose(replica.url, data)
            return self._info
        raise self._unavailable(last)

    def _choose(self, url: str, served: list[Model]) -> ModelInfo:
        if not served:
            raise LLMError(f"the LLM server at {url} serves no model")
        chosen = next((m for m in served if m.id == self.model), None)
        if self.model and chosen is None:
            names = ", ".join(m.id for m in served)
            raise LLMError(f"llm.model: '{self.model}' is not served at {url} (it serves {names})")
        chosen = chosen or served[0]
        extra = chosen.model_extra or {}
        window = extra.get("max_model_len") or extra.get("context_length")
        return ModelInfo(chosen.id, int(window) if window else None, url)

    # -- chat -------------------------------------------------------------------------------
    def chat_stream(self, messages: list[dict[str, str]], max_tokens: int = 1024,
                    temperature: float = 0.1) -> Iterator[Delta]:
        """Streams the answer. Moves to the next replica only before the answer started."""
        model = self.model_info().id
        chat = [_param(m) for m in messages]
        last: Exception | None = None
        for replica, sdk in self._attempts():
            try:
                stream = sdk.chat.completions.create(
                    model=model, messages=chat, max_tokens=max_tokens, temperature=temperature,
                    stream=True, stream_options={"include_usage": True})
            except openai.APIConnectionError as exc:
                self._mark(replica, False)
                last = exc
                continue
            except openai.APIStatusError as exc:
                self._mark(replica, exc.status_code < 500)
                raise _refusal(exc) from None
            self._mark(replica, True)
            self.last_url = replica.url
            yield from self._deltas(replica, sdk, stream, model, chat)
            return
        raise self._unavailable(last)

    def _deltas(self, replica: _Replica, sdk: openai.OpenAI, stream: openai.Stream[ChatCompletionChunk],
                model: str, chat: list[ChatCompletionMessageParam]) -> Iterator[Delta]:
        produced = False
        try:
            with stream:
                for chunk in stream:
                    delta = _delta(chunk)
                    if delta.text or delta.usage or delta.finish_reason:
                        produced = True
                        yield delta
        except openai.APIConnectionError as exc:
            if not produced:
                # Nothing lost yet. llama-cpp-python resets a stream it refuses (e.g. a
                # prompt over its window): the same request unstreamed says why.
                self._explain_empty(replica, sdk, model, chat)
            raise LLMUnavailableError(f"the LLM server at {replica.url} dropped the answer "
                                      f"({type(exc.__cause__ or exc).__name__}: "
                                      f"{exc.__cause__ or exc})") from None
        except openai.APIError as exc:  # an error event in the stream
            raise LLMError(f"the LLM server failed mid-answer: {exc.message}") from None
        if not produced:
            self._explain_empty(replica, sdk, model, chat)
            raise LLMError(f"the LLM server at {replica.url} ended the answer without any output")

    def _explain_empty(self, replica: _Replica, sdk: openai.OpenAI, model: str,
                       chat: list[ChatCompletionMessageParam]) -> None:
        """Some servers (llama-cpp-python) answer a stream they cannot serve with an empty
        200; the same request without streaming (one token) raises why. The failed stream
        may leave a dead pooled connection: one retry."""
        try:
            sdk.with_options(max_retries=1).chat.completions.create(
                model=model, messages=chat, max_tokens=1, stream=False)
        except openai.APIStatusError as exc:
            raise _refusal(exc) from None
        except openai.APIConnectionError:
            return  # the caller says the answer was dropped

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 1024,
             temperature: float = 0.1) -> tuple[str, dict[str, Any]]:
        text: list[str] = []
        usage: dict[str, Any] = {}
        for delta in self.chat_stream(messages, max_tokens, temperature):
            text.append(delta.text)
            usage = delta.usage or usage
        return "".join(text), usage


def _param(message: dict[str, str]) -> ChatCompletionMessageParam:
    role, content = message["role"], message["content"]
    if role == "system":
        return ChatCompletionSystemMessageParam(role="system", content=content)
    if role == "assistant":
        return ChatCompletionAssistantMessageParam(role="assistant", content=content)
    return ChatCompletionUserMessageParam(role="user", content=content)


def _delta(chunk: ChatCompletionChunk) -> Delta:
    delta = Delta(usage=chunk.usage.model_dump(exclude_none=True) if chunk.usage else None)
    for choice in chunk.choices or []:
        if choice.delta is not None:
            delta.text += choice.delta.content or ""
        delta.finish_reason = choice.finish_reason or delta.finish_reason
    return delta


def _message(exc: openai.APIStatusError) -> str:
    """The server's own words: the SDK's body is the `error` object (OpenAI servers), a
    FastAPI `detail`, or the text of the reply."""
    body = exc.body
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body or exc.response.reason_phrase)[:300]


def _refusal(exc: openai.APIStatusError) -> LLMError:
    """The domain error for a server's HTTP refusal."""
    status, message = exc.status_code, _message(exc)
    if status in (400, 413, 422) and _TOO_LONG.search(message):
        found = _WINDOW.search(message)
        return PromptTooLongError(f"the prompt does not fit the model's context window: {message}",
                                  int(found.group(1)) if found else None)
    if status in (401, 403):
        return LLMError(f"the LLM server refused the key (llm.api_key): {message}")
    if status >= 500:
        return LLMError(f"the LLM server failed ({status}) at {exc.request.url}: {message}")
    return LLMError(f"the LLM server rejected the request ({status}): {message}")
