"""The API's one map from domain errors to the envelope: status and code from the table, the
param from a SettingsError's field (never parsed from its message), nothing inside shown for
an unexpected error; and the streamed OpenAI error is the same envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import anyio
import pytest

from app.api.deps import ApiState
from app.api.errors import from_exception
from app.api.routes_openai import _chunks
from app.llm import LLMError, LLMUnavailableError, PromptTooLongError
from core.errors import (
    LoadError,
    NotFoundError,
    RagError,
    SettingsError,
    StoreError,
    StoreLockedError,
)


@pytest.mark.parametrize(("exc", "status", "code"), [
    (PromptTooLongError("too long", 8192), 413, "context_length_exceeded"),
    (LLMUnavailableError("down"), 503, "llm_unavailable"),
    (LLMError("refused"), 502, "llm_error"),
    (SettingsError("budget_tokens", "must be positive"), 422, "invalid_value"),
    (NotFoundError("no such document"), 404, "not_found"),
    (LoadError("not a PDF"), 422, "unreadable_file"),
    (StoreLockedError("owned by pid 7"), 503, "store_locked"),
    (StoreError("unreachable"), 503, "store_unavailable"),
    (RagError("something"), 500, "internal_error"),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_each_domain_error_has_its_status_and_code(exc: RagError, status: int, code: str) -> None:
    e = from_exception(exc)
    assert (e.status, e.code, e.message) == (status, code, str(exc))
    assert not hasattr(exc, "status")  # the table decides, not the error


@pytest.mark.parametrize("field", ["question", "retrieval.budget_tokens", "--filter"])
def test_the_param_is_the_settings_errors_field(field: str) -> None:
    assert from_exception(SettingsError(field, "wrong")).param == field


def test_an_unexpected_error_says_nothing_of_the_inside() -> None:
    e = from_exception(KeyError("secret_internal_name"))
    assert e.status == 500 and "secret_internal_name" not in e.message


class _Metrics:
    def packed(self, route: str, data: dict[str, Any]) -> None: ...

    def answered(self, usage: dict[str, Any]) -> None: ...


class _State:
    metrics = _Metrics()


def _failing() -> Iterator[Any]:
    raise PromptTooLongError("the prompt does not fit", 8192)
    yield  # a generator


def test_the_streamed_openai_error_is_the_same_envelope() -> None:
    """After a 200, a failure is a data event holding the envelope a JSON error would carry."""
    async def run() -> list[str]:
        meta = {"id": "chatcmpl-1", "created": 0, "model": "m"}
        return [c async for c in _chunks(cast(ApiState, _State()), meta, [], _failing(), False)]

    chunks = anyio.run(run)
    assert chunks[-1].startswith("data: ") and chunks[-1].endswith("\n\n")
    assert json.loads(chunks[-1][6:]) == {"error": {
        "message": "the prompt does not fit", "type": "invalid_request_error", "param": None,
        "code": "context_length_exceeded"}}
