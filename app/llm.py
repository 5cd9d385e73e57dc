"""An OpenAI-compatible chat client over plain HTTP (vLLM, llama.cpp, Ollama, TGI, SGLang...).

One client may hold several replica URLs: requests go round robin over the replicas that are
up; a replica that refuses a connection is set aside for a cool-down and the request moves on
to the next, so one stopped replica costs no failed answers.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.errors import RagError


class LLMError(RagError):
    """The LLM server answered with an error."""

    exit_code = 3
    status = 502


class LLMUnavailableError(LLMError):
    """No LLM server could be reached."""

    status = 503


class PromptTooLongError(LLMError):
    """The prompt (plus the answer reserve) does not fit the served context window."""

    status = 413

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
    _http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        if not self.urls:
            raise RagError("llm.url: no LLM server URL")
        self._replicas = [_Replica(u.rstrip("/")) for u in self.urls]
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    def close(self) -> None:
        self._http.close()

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

    def _attempts(self) -> Iterator[_Replica]:
        order = self._order()
        for attempt in range(max(self.retries + 1, len(order))):
            if attempt >= len(order) and attempt > 0:
                time.sleep(min(0.25 * 2 ** (attempt - len(order)), 2.0))
            yield order[attempt % len(order)]

    def _unavailable(self, last: Exception | None) -> LLMUnavailableError:
        where = ", ".join(r.url for r in self._replicas)
        why = f" ({type(last).__name__}: {last})" if last else ""
        return LLMUnavailableError(f"the LLM server is not reachable at {where}{why}; start it "
                                   "(rag serve cpu | rag serve vllm) or fix llm.url")

    # -- models -----------------------------------------------------------------------------
    def model_info(self, refresh: bool = False) -> ModelInfo:
        """The model to request and its context window (vLLM reports max_model_len)."""
        if self._info is not None and not refresh:
            return self._info
        last: Exception | None = None
        for replica in self._attempts():
            try:
                response = self._http.get(replica.url + "/models")
            except httpx.TransportError as exc:
                self._mark(replica, False)
                last = exc
                continue
            self._mark(replica, True)
            _raise_for_status(response)
            data = response.json().get("data") or []
            if not data:
                raise LLMError(f"the LLM server at {replica.url} serves no model")
            chosen = next((m for m in data if m.get("id") == self.model), None)
            if self.model and chosen is None:
                names = ", ".join(str(m.get("id")) for m in data)
                raise LLMError(f"llm.model: '{self.model}' is not served at {replica.url} "
                               f"(it serves {names})")
            chosen = chosen or data[0]
            window = chosen.get("max_model_len") or chosen.get("context_length")
            self._info = ModelInfo(str(chosen["id"]), int(window) if window else None, replica.url)
            return self._info
        raise self._unavailable(last)

    # -- chat -------------------------------------------------------------------------------
    def _body(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
              stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_info().id,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def chat_stream(self, messages: list[dict[str, str]], max_tokens: int = 1024,
                    temperature: float = 0.1) -> Iterator[Delta]:
        """Streams the answer. Retries (next replica) only before the first byte arrives."""
        body = self._body(messages, max_tokens, temperature, stream=True)
        last: Exception | None = None
        produced = False
        for replica in self._attempts():
            try:
                with self._http.stream("POST", replica.url + "/chat/completions",
                                       json=body) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._mark(replica, response.status_code < 500)
                        _raise_for_status(response)
                    self._mark(replica, True)
                    self.last_url = replica.url
                    for delta in _sse_deltas(response):
                        produced = True
                        yield delta
                    if not produced:
                        self._explain_empty(replica, body)
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self._mark(replica, False)
                last = exc
                continue
            except httpx.TransportError as exc:
                if not produced:
                    # Nothing lost yet. llama-cpp-python resets a stream it refuses (e.g. a
                    # prompt over its window): the same request unstreamed says why.
                    with contextlib.suppress(httpx.TransportError):
                        self._explain_empty(replica, body)
                raise LLMUnavailableError(f"the LLM server at {replica.url} dropped the answer "
                                          f"({type(exc).__name__}: {exc})") from None
        raise self._unavailable(last)

    def _explain_empty(self, replica: _Replica, body: dict[str, Any]) -> None:
        """Some servers (llama-cpp-python) answer a stream they cannot serve with an empty
        200; the same request without streaming (one token) tells why."""
        probe = {**body, "stream": False, "max_tokens": 1}
        probe.pop("stream_options", None)
        for attempt in range(2):
            try:
                response = self._http.post(replica.url + "/chat/completions", json=probe)
            except httpx.TransportError:  # the failed stream may leave a dead connection
                if attempt:
                    raise
                continue
            _raise_for_status(response)
            break
        raise LLMError(f"the LLM server at {replica.url} ended the answer without any output")

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 1024,
             temperature: float = 0.1) -> tuple[str, dict[str, Any]]:
        text: list[str] = []
        usage: dict[str, Any] = {}
        for delta in self.chat_stream(messages, max_tokens, temperature):
            text.append(delta.text)
            usage = delta.usage or usage
        return "".join(text), usage


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(err or body)[:300]


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    message = _error_message(response)
    where = str(response.request.url)
    if response.status_code in (400, 413, 422) and _TOO_LONG.search(message):
        found = _WINDOW.search(message)
        raise PromptTooLongError(f"the prompt does not fit the model's context window: {message}",
                                 int(found.group(1)) if found else None)
    if response.status_code in (401, 403):
        raise LLMError(f"the LLM server refused the key (llm.api_key): {message}")
    if response.status_code >= 500:
        raise LLMError(f"the LLM server failed ({response.status_code}) at {where}: {message}")
    raise LLMError(f"the LLM server rejected the request ({response.status_code}): {message}")


def _sse_deltas(response: httpx.Response) -> Iterator[Delta]:
    """Server-sent events of an OpenAI chat completion stream → deltas."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if "error" in event:
            err = event["error"]
            raise LLMError(f"the LLM server failed mid-answer: "
                           f"{err.get('message', err) if isinstance(err, dict) else err}")
        delta = Delta(usage=event.get("usage"))
        for choice in event.get("choices") or []:
            delta.text += (choice.get("delta") or {}).get("content") or ""
            delta.finish_reason = choice.get("finish_reason") or delta.finish_reason
        if delta.text or delta.usage or delta.finish_reason:
            yield delta
