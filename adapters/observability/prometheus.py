"""Prometheus metrics with the seed's names and labels, in a registry owned by one app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

HTTP_BUCKETS = (0.1, 0.5, 1, 2, 5)  # the seed's buckets


class PrometheusMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "HTTP request duration", ["method", "route", "status"],
            buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.action_executions = Counter(
            "action_executions", "Action executions", ["orgId", "toolKey", "actionKey", "status"], registry=r
        )
        self.action_duration = Histogram(
            "action_execution_duration_seconds", "Action execution duration", ["orgId", "toolKey", "actionKey"],
            registry=r,
        )  # fmt: skip
        self.auth_injection = Counter(
            "action_auth_injection", "Auth injections into actions", ["orgId", "toolKey", "authType", "status"],
            registry=r,
        )  # fmt: skip

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.http_requests.labels(method, route, code).inc()
        self.http_duration.labels(method, route, code).observe(seconds)

    def action_executed(
        self, org_id: str, tool_key: str, action_key: str, status: str, seconds: float
    ) -> None:
        self.action_executions.labels(org_id, tool_key, action_key, status).inc()
        self.action_duration.labels(org_id, tool_key, action_key).observe(seconds)

    def auth_injected(self, org_id: str, tool_key: str, auth_type: str, status: str) -> None:
        self.auth_injection.labels(org_id, tool_key, auth_type, status).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
