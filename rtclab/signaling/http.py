"""Plain HTTP beside the WebSocket: route handlers and the responses they return (no I/O).

The server answers requests for paths other than its WebSocket path from a table of
:data:`HttpHandler` s (credentials, metrics, the browser client's files); a handler gets
websockets' parsed request and returns the whole response, which then ends the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

__all__ = ["HttpHandler", "Request", "Response", "header", "http_response"]

HttpHandler = Callable[[Request], Response]
"""A plain-HTTP route: gets the parsed request, returns the whole response (build it with
:func:`http_response`). Runs synchronously in the loop: keep it quick."""

_REASONS: Final = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def http_response(
    status: int,
    body: bytes | str = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Response:
    """A complete HTTP/1.1 response for an :data:`HttpHandler` (connection closes after it)."""
    data = body.encode() if isinstance(body, str) else body
    all_headers = Headers()
    all_headers["Content-Type"] = content_type
    all_headers["Content-Length"] = str(len(data))
    all_headers["Connection"] = "close"
    all_headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        all_headers[name] = value
    return Response(status, _REASONS.get(status, "Unknown"), all_headers, data)


def header(headers: Headers, name: str) -> str | None:
    """A single-valued header, ``None`` if absent; repeated ones count as invalid (``""``)."""
    try:
        return headers.get(name)
    except MultipleValuesError:
        return ""
