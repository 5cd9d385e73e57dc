"""A small client for the RAG REST API (httpx; the streamed answer's events read by httpx-sse).

Every failure becomes an `ApiError` whose `message` is fit to show a person and whose `hint`
says what to do; the UI never shows a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from ui.settings import UISettings


class ApiError(Exception):
    """A failed API call: `message` for a person, `hint` what to do about it."""

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None,
                 code: str | None = None, param: str | None = None, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ApiUnreachableError(ApiError):
    """No answer from the API at all (not running, wrong URL, timed out)."""


class LLMUnavailableError(ApiError):
    """The API is up but its language model server is not (HTTP 503)."""


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event of POST /v1/query with stream: true."""

    event: str  # retrieval | delta | done
    data: dict[str, Any]


class ApiClient:
    """One httpx.Client to the API; use as a context manager or call close()."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 600.0,
                 connect_timeout_s: float = 3.0, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))

    @classmethod
    def from_settings(cls, settings: UISettings) -> ApiClient:
        return cls(settings.api_url, settings.api_key, timeout_s=settings.timeout_s,
                   connect_timeout_s=settings.connect_timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints --------------------------------------------------------------------------
    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def config(self) -> dict[str, Any]:
        return self._json("GET", "/v1/config")

    def documents(self) -> list[dict[str, Any]]:
        """Every stored document, in one reply (a large store wants `document_page`)."""
        return list(self._json("GET", "/v1/documents").get("data", []))

    def document_page(self, limit: int, cursor: str | None = None) -> dict[str, Any]:
        """A page of documents: `data`, `total` (all documents) and `next_cursor` (None after
        the last page)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return dict(self._json("GET", "/v1/documents", params=params))

    def upload(self, files: list[tuple[str, bytes, str | None]]) -> dict[str, Any]:
        """Starts ingesting (name, content, mime type) files; returns the job."""
        parts = [("files", (name, content, mime or "application/octet-stream"))
                 for name, content, mime in files]
        return dict(self._json("POST", "/v1/documents", files=parts)["job"])

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def delete_document(self, document_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/documents/{document_id}")

    def page_image(self, document_id: str, page: int, highlight: str = "",
                   width: int = 1000) -> tuple[bytes, str]:
        """A stored PDF's page as PNG bytes with `highlight` marked, and whether the quote
        was found on it (exact, partial, none). A moved file is an ApiError with status 410."""
        try:
            response = self._http.get(f"/v1/documents/{quote(document_id, safe='')}/pages/"
                                      f"{int(page)}.png",
                                      params={"highlight": highlight[:4000], "width": width})
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response.content, response.headers.get("x-highlight", "none")

    def retrieve(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/retrieve", json=body)

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/query", json={**body, "stream": False})

    def stream_query(self, body: dict[str, Any]) -> Iterator[StreamEvent]:
        """The events of a streamed answer: retrieval, delta..., done. An `error` event, or a
        failed request, raises ApiError."""
        try:
            with self._http.stream("POST", "/v1/query", json={**body, "stream": True},
                                   headers={"Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                for sse in EventSource(response).iter_sse():
                    event = _stream_event(sse)
                    if event.event == "error":  # after a 200: the envelope tells what failed
                        raise error_from_envelope(event.data, None)
                    yield event
        except SSEError:
            raise ApiError(f"The API at {self.base_url} answered with something other than a "
                           "stream of events.",
                           hint="Check that RAG_UI__API_URL points at the RAG API.") from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def start_eval(self, body: dict[str, Any]) -> dict[str, Any]:
        """Starts an evaluation of the collection; returns its job."""
        return dict(self._json("POST", "/v1/eval", json=body)["job"])

    def eval_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/eval/{job_id}")

    def eval_runs(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/eval").get("data", []))

    # -- plumbing -----------------------------------------------------------------------------
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"The API at {self.base_url} sent a reply that is not JSON.",
                           status=response.status_code,
                           hint="Check that RAG_UI__API_URL points at the RAG API.") from None

    def _unreachable(self, exc: httpx.HTTPError) -> ApiUnreachableError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ApiUnreachableError(
                f"The API at {self.base_url} did not answer in time.",
                hint="It may be busy (a long answer on a CPU); try again, or raise "
                     "RAG_UI__TIMEOUT_S.")
        return ApiUnreachableError(
            f"Cannot reach the RAG API at {self.base_url}.",
            hint="Start it with `rag api` (or `make run`), or point RAG_UI__API_URL at it.")

    def _error(self, response: httpx.Response) -> ApiError:
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"message": response.text.strip()[:300] or response.reason_phrase}}
        return error_from_envelope(payload, response.status_code)


def error_from_envelope(payload: Any, status: int | None) -> ApiError:
    """The API's {"error": {message, type, param, code}} as an ApiError with a hint."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        err = {"message": str(err or payload)}
    message = str(err.get("message") or "The API reported an error.")
    code = _str(err.get("code"))
    kind, hint = ApiError, ""
    if code in ("store_locked", "store_unavailable"):
        message = f"The document store is not available: {message}"
        hint = "See the API's log; it may need a restart."
    elif code == "llm_unavailable" or status == 503:
        kind, message = LLMUnavailableError, f"The language model is not available: {message}"
        hint = ("Start the LLM server the API uses (RAG_LLM__URL; with no URL the API starts "
                "the CPU llama.cpp server itself), then ask again.")
    elif status in (401, 403):
        message = f"The API refused this UI's key: {message}"
        hint = "Set RAG_UI__API_KEY to one of the API's keys (RAG_API__KEYS)."
    elif status == 404:
        hint = "It may have been deleted meanwhile; reload the page."
    elif code == "context_length_exceeded":
        hint = "Start a new conversation, or lower the token budget."
    elif code == "llm_error":
        message, hint = f"The language model failed: {message}", "Ask again; see the API's log."
    elif status == 413:
        hint = "Upload smaller files, or fewer at once."
    elif status is not None and status >= 500:
        message, hint = f"The API failed: {message}", "See the API's log for details."
    return kind(message, status=status, type=_str(err.get("type")), code=code,
                param=_str(err.get("param")), hint=hint)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _stream_event(sse: ServerSentEvent) -> StreamEvent:
    """The event's JSON data as a dict (plain text as {"text": ...})."""
    try:
        payload = json.loads(sse.data)
    except ValueError:
        payload = {"text": sse.data}
    return StreamEvent(sse.event, payload if isinstance(payload, dict) else {"value": payload})
