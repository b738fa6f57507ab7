"""The ASGI guard in front of every route: API key, content type, body size limit, and the request metrics.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one wraps `receive`, and the dance route must
see the client's disconnect through it (`Request.is_disconnected`) to drop a waiting job.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Open without a key: the liveness probe, and the API's own description.
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# Metric labels: known routes by name, anything else as "other" (no label per scanned URL).
ROUTES = ("/healthz", "/v1/info", "/metrics", "/v1/dances", "/docs", "/redoc", "/openapi.json")
KEY_HEADER = "x-api-key"


def route_label(path: str) -> str:
    """The `route` label of a request path."""
    return path if path in ROUTES else "other"


class Guard:
    """401 without the API key (when one is set), 415 for a POST that is not JSON, 413 past `max_body_bytes`."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int,
                 observe: Callable[[str, str, int, float], None]):
        self.app, self.max_body_bytes, self.observe = app, max_body_bytes, observe
        self.api_key = None if not api_key else api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, seen = time.perf_counter(), {"status": 500}

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
            await send(message)

        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            refusal = self._refusal(scope, headers)
            if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
                receive, refusal = await self._buffered(receive)
            if refusal is not None:
                status, field, message = refusal
                await _json(counted, status, field, message)
            else:
                await self.app(scope, receive, counted)
        finally:
            self.observe(route_label(scope["path"]), scope["method"], seen["status"], time.perf_counter() - start)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(KEY_HEADER, "").encode("utf-8")
            if not hmac.compare_digest(given, self.api_key):  # constant time: no key guessing by timing
                return 401, "X-API-Key", "X-API-Key: missing or wrong API key"
        if scope["method"] in ("POST", "PUT", "PATCH"):
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                return 415, "Content-Type", f"Content-Type: {media or 'none'} is not accepted (send application/json)"
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                return 413, "body", f"body: {length} bytes is over the limit of {self.max_body_bytes} bytes"
        return None

    async def _buffered(self, receive: Receive) -> tuple[Receive, tuple[int, str, str] | None]:
        """Read the whole body (a chunked one has no Content-Length to check) and hand it on in one message."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay([message], receive), None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return receive, (413, "body", f"body: over the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive), None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives `messages` first, then the connection's own (its disconnect, later)."""
    queue = list(messages)

    async def replay() -> Message:
        return queue.pop(0) if queue else await receive()

    return replay


async def _json(send: Send, status: int, field: str, message: str) -> None:
    body = json.dumps({"error": message, "fields": [field], "detail": [{"field": field, "message": message}]})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode("utf-8")})
