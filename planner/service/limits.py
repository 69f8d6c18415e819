"""The request body cap (``CHORDAL_MAX_REQUEST_BYTES``), as ASGI middleware.

Checked twice: on ``Content-Length`` before a byte is read, and on the body as it streams
in (a chunked body, or one longer than it said), so no request makes the server buffer more
than the cap. A body is read whole here (it is at most the cap) and replayed to the app.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from planner.service.errors import error_response

#: Requests without a body pass untouched: an SSE stream keeps its own ``receive`` (it
#: listens on it for the client going away).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (f"body: over {self.max_bytes} bytes (CHORDAL_MAX_REQUEST_BYTES)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await error_response(400, "BadRequest", "Content-Length: not a "
                                         "number of bytes")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await error_response(413, "RequestTooLarge",
                                         self._too_large())(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await error_response(413, "RequestTooLarge",
                                     self._too_large())(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
