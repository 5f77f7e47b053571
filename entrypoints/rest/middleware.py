"""ASGI middleware: request body limit, answered in the seed's error format."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.rest.errors import error_body
from entrypoints.rest.responses import json


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds the limit of {limit} bytes")


class BodyLimit:
    """Refuses bodies over ``max_bytes``: by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunked, declared = False, None
        for name, value in scope["headers"]:
            if name == b"transfer-encoding":
                chunked = True
            elif name == b"content-length":
                declared = value
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await json(error_body(400, "Invalid Content-Length header"), 400)(scope, receive, send)
                return
            if size > self.max_bytes:
                exc = BodyTooLarge(self.max_bytes)
                await json(error_body(413, exc.detail), 413, {"Connection": "close"})(scope, receive, send)
                return
        if not chunked:
            # HTTP/1.1 bodies are either declared (and the server reads no more than declared)
            # or chunked: with no chunked body there is nothing left to count.
            await self.app(scope, receive, send)
            return
        received = 0
        limit = self.max_bytes

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # FastAPI re-raises HTTPExceptions from body parsing
            return message

        await self.app(scope, limited, send)
