"""An in-memory HttpClient: answers from a script the test writes, and records what was sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from application.ports import OutboundRequest, OutboundResponse

Answer = Callable[
    [OutboundRequest, int], tuple[int, Any]
]  # (request, nth call to that URL) -> (status, body)


class FakeHttpClient:
    def __init__(self) -> None:
        self.sent: list[OutboundRequest] = []
        self.routes: dict[str, Answer] = {}

    def route(self, url: str, answer: Answer) -> None:
        self.routes[url] = answer

    def calls(self, url: str) -> list[OutboundRequest]:
        return [r for r in self.sent if r.url == url]

    async def send(self, request: OutboundRequest) -> OutboundResponse:
        self.sent.append(request)
        answer = self.routes.get(request.url)
        status, body = (
            (404, {"error": "no route"}) if answer is None else answer(request, len(self.calls(request.url)))
        )
        content = json.dumps(body).encode()
        return OutboundResponse(status, {"content-type": "application/json"}, content, request.url)
