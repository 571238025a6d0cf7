"""A cap on request bodies (a named setting, ``max_body_bytes``; uploads have ``max_upload_bytes``): 413 above it.

Pure ASGI, ahead of routing: a declared ``Content-Length`` over the cap is refused before a byte is read, and a
chunked body is read only up to the cap, so no endpoint ever holds more than the cap in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable


class BodyLimit:
    def __init__(self, app, limit_for: Callable[[str], int], on_refused: Callable[[str], None] | None = None):
        self.app = app
        self.limit_for = limit_for
        self.on_refused = on_refused

    async def _refuse(self, scope, send, limit: int) -> None:
        if self.on_refused is not None:
            self.on_refused(scope.get("path", ""))
        body = json.dumps({"error": "body_too_large", "limit_bytes": limit}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self._refuse(scope, send, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
