"""HTTP metrics for every request, labelled by route template (bounded cardinality), and /metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.observability.prometheus import PrometheusMetrics

UNMATCHED = "unmatched"  # 404s for unknown paths share one label instead of one per raw path


class HttpMetrics:
    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.http_request(scope["method"], template, status, time.perf_counter() - started)


router = APIRouter(tags=["Health"])


@router.get("/metrics", summary="Prometheus metrics (no authentication, for scraping)")
async def metrics(request: Request) -> Response:
    registry = request.app.state.container.metrics()
    return Response(registry.exposition(), media_type=registry.content_type)
