"""ASGI middleware that acts before any body is read: API keys and body size limits.

Both are plain ASGI (not FastAPI dependencies) so that an unauthenticated or oversized
request is refused before a single byte of its body is parsed or spooled to disk.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import envelope


async def send_error(send: Send, status: int, message: str, code: str | None = None,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(envelope(status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


# A refused body is not drained: the server closes the connection, so the client stops sending.
_CLOSE = ((b"connection", b"close"),)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class AuthMiddleware:
    """`Authorization: Bearer KEY` with one of the configured keys, except on public paths."""

    def __init__(self, app: ASGIApp, keys: list[str], public: set[str]):
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.public = public

    def _allowed(self, scope: Scope) -> bool:
        raw = _header(scope, b"authorization") or b""
        scheme, _, token = raw.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        token = token.strip()
        # Compare with every key (no early exit), in constant time per key.
        return any([hmac.compare_digest(token, k) for k in self.keys])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" \
                or scope["path"] in self.public or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await send_error(send, 401, "a valid API key is required: send 'Authorization: Bearer KEY'",
                         code="invalid_api_key", headers=[(b"www-authenticate", b"Bearer")])


class BodyLimitMiddleware:
    """Refuses bodies over the limit of their path with 413: by Content-Length up front, or
    while reading a body sent without one."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_large = f"the request body is over the limit of {limit / 2**20:g} MB"
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_error(send, 400, "invalid Content-Length header")
                return
            if size > limit:
                await send_error(send, 413, too_large, code="body_too_large", headers=_CLOSE)
                return
        received = 0
        exceeded = False
        started = False

        async def receiving() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True  # the app sees a disconnect and stops reading
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app answers to the cut body, the client gets the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_error(send, 413, too_large, code="body_too_large", headers=_CLOSE)
