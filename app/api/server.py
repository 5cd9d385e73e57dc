"""uvicorn's HTTP protocol with one change: a request it cannot parse (a malformed
Content-Length, a bad request line or header) is answered in the error envelope, not with
uvicorn's plain-text "Invalid HTTP request received." — that answer is written by the
protocol before the app sees anything, so no middleware can reach it.

`rag api` passes HTTP_PROTOCOL to uvicorn (`http=`), as do the tests' servers.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from app.api.errors import envelope

BAD_REQUEST = ("the request is not valid HTTP/1.1 (a malformed header such as Content-Length, "
               "or a bad request line)")


def bad_request_bytes() -> bytes:
    body = json.dumps(envelope(400, BAD_REQUEST, code="invalid_http")).encode()
    head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
    return head + body


class _EnvelopeBadRequest:
    transport: Any

    def send_400_response(self, msg: str) -> None:
        self.transport.write(bad_request_bytes())
        self.transport.close()


class EnvelopeHTTPProtocol(_EnvelopeBadRequest, AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's "auto" protocol (httptools when installed, else h11), enveloped 400."""


# For uvicorn.run(..., http=HTTP_PROTOCOL): an import string works with worker processes too.
HTTP_PROTOCOL = f"{__name__}:EnvelopeHTTPProtocol"
