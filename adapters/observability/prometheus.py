"""Prometheus metrics with the seed's names and labels, in a registry owned by one app."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

HTTP_BUCKETS = (0.1, 0.5, 1, 2, 5)  # the seed's buckets
STEP_BUCKETS = (0.1, 0.5, 1, 5, 10)


class PrometheusMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
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

        self.step_duration = Histogram(
            "step_execution_seconds", "Flow step execution time", ["orgId", "flowId", "stepKey"],
            buckets=STEP_BUCKETS, registry=r,
        )  # fmt: skip
        self.step_retries = Counter(
            "step_retries", "Flow step retries scheduled", ["orgId", "flowId", "stepKey"], registry=r
        )
        self.step_errors = Counter(
            "step_errors", "Flow step attempts that failed", ["orgId", "flowId", "stepKey"], registry=r
        )
        self.step_auth_injection = Counter(
            "auth_credential_injection", "Credentials injected into flow steps", ["orgId", "stepId", "authType"],
            registry=r,
        )  # fmt: skip

    def step_executed(self, org_id: str, flow_id: str, step_key: str, seconds: float) -> None:
        self.step_duration.labels(org_id, flow_id, step_key).observe(seconds)

    def step_retried(self, org_id: str, flow_id: str, step_key: str) -> None:
        self.step_retries.labels(org_id, flow_id, step_key).inc()

    def step_failed(self, org_id: str, flow_id: str, step_key: str) -> None:
        self.step_errors.labels(org_id, flow_id, step_key).inc()

    def step_auth_injected(self, org_id: str, step_id: str, auth_type: str) -> None:
        self.step_auth_injection.labels(org_id, step_id, auth_type).inc()

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:  # label look-ups cost more than the counting: done once per series
            code = str(status)
            children = (
                self.http_requests.labels(method, route, code),
                self.http_duration.labels(method, route, code),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def action_executed(
        self, org_id: str, tool_key: str, action_key: str, status: str, seconds: float
    ) -> None:
        self.action_executions.labels(org_id, tool_key, action_key, status).inc()
        self.action_duration.labels(org_id, tool_key, action_key).observe(seconds)

    def auth_injected(self, org_id: str, tool_key: str, auth_type: str, status: str) -> None:
        self.auth_injection.labels(org_id, tool_key, auth_type, status).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
