"""One error envelope for every failure: {"error": {"message", "type", "param", "code"}}.

Domain errors (core/errors.py, app/llm.py) carry no HTTP status: `_DOMAIN` below decides it,
and they keep their message, which is written for users; a SettingsError's field is the
`param`. Anything unexpected becomes a 500 whose message says nothing about the inside, and
its traceback goes to the server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.llm import LLMError, LLMUnavailableError, PromptTooLongError
from core.errors import LoadError, NotFoundError, RagError, SettingsError, StoreError, StoreLockedError

log = logging.getLogger("rag.api")

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 422: "invalid_request_error", 500: "internal_error",
    502: "upstream_error", 503: "service_unavailable",
}
_CODES = {400: "bad_request", 401: "invalid_api_key", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
          422: "invalid_value", 500: "internal_error", 502: "upstream_error",
          503: "unavailable"}

# The one map from domain errors to HTTP (status, code): the first class that matches wins,
# so a subclass comes before its base.
_DOMAIN: tuple[tuple[type[RagError], int, str | None], ...] = (
    (PromptTooLongError, 413, "context_length_exceeded"),
    (LLMUnavailableError, 503, "llm_unavailable"),
    (LLMError, 502, "llm_error"),
    (SettingsError, 422, None),
    (NotFoundError, 404, None),
    (LoadError, 422, "unreadable_file"),
    (StoreLockedError, 503, "store_locked"),
    (StoreError, 503, "store_unavailable"),
    (RagError, 500, None),
)


class ApiError(Exception):
    """An error raised by a route, with its HTTP status and envelope fields."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type_: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code or _CODES.get(status, "error")
        self.type = type_ or _TYPES.get(status, "api_error")
        self.headers = headers

    def envelope(self) -> dict[str, Any]:
        return envelope(self.status, self.message, self.param, self.code, self.type)


def envelope(status: int, message: str, param: str | None = None, code: str | None = None,
             type_: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_ or _TYPES.get(status, "api_error"),
                      "param": param, "code": code or _CODES.get(status, "error")}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   type_: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(status, message, param, code, type_), status_code=status,
                        headers=headers)


def from_exception(exc: BaseException) -> ApiError:
    """The API error for any exception (domain errors keep their message)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RagError):
        status, code = next((s, c) for kind, s, c in _DOMAIN if isinstance(exc, kind))
        param = exc.field if isinstance(exc, SettingsError) else None
        return ApiError(status, str(exc), param=param, code=code)
    log.error("unexpected error", exc_info=exc)
    return ApiError(500, "internal server error (the server log has the details)")


def _validation_message(err: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    msg = str(err.get("msg", "invalid value"))
    if err.get("type") == "json_invalid":
        return f"the body is not valid JSON: {err.get('ctx', {}).get('error', msg)}", None
    return (f"{param}: {msg}" if param else msg), param


_PARSE_FAILED = "There was an error parsing the body"


def _body_error(cause: BaseException | None) -> str:
    """What FastAPI's generic "error parsing the body" was, in words a client can act on."""
    if isinstance(cause, UnicodeDecodeError):
        return (f"the body is not valid JSON: it is not UTF-8 (byte 0x{cause.object[cause.start]:02x} "
                f"at position {cause.start})")
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON here: its arrays or objects are nested too deeply"
    return "the body cannot be read as JSON"


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every exception into the envelope."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.type, exc.headers)

    @app.exception_handler(RagError)
    async def _rag(_: Request, exc: RagError) -> JSONResponse:
        e = from_exception(exc)
        return error_response(e.status, e.message, e.param, e.code, e.type)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message, param = _validation_message(errors[0]) if errors else ("invalid request", None)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return error_response(422, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and message == _PARSE_FAILED:
            message = _body_error(exc.__cause__)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        e = from_exception(exc)
        return error_response(e.status, e.message, e.param, e.code, e.type)
