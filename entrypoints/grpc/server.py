"""The grpc.aio server: every tolstoy.v1 service, the standard health service (SERVING while the
database answers) and server reflection. Runs beside REST in `tolstoy serve`, or alone in
`tolstoy grpc`; both stop it gracefully (in-flight calls get a grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from entrypoints.container import Container
from entrypoints.grpc.errors import tolerant
from entrypoints.grpc.gen.tolstoy.v1 import (
    action_service_pb2_grpc,
    api_key_service_pb2_grpc,
    execution_log_service_pb2_grpc,
    flow_service_pb2_grpc,
    organization_service_pb2_grpc,
    tool_service_pb2_grpc,
    user_service_pb2_grpc,
)
from entrypoints.grpc.services.flows import ExecutionLogService, FlowService
from entrypoints.grpc.services.organizations import ApiKeyService, OrganizationService, UserService
from entrypoints.grpc.services.tools import ActionService, ToolService

log = logging.getLogger("tolstoy.grpc")

HEALTH_INTERVAL_SECONDS = 5.0
GRACE_SECONDS = 10.0

_SERVICES = [
    (OrganizationService, organization_service_pb2_grpc.add_OrganizationServiceServicer_to_server),
    (UserService, user_service_pb2_grpc.add_UserServiceServicer_to_server),
    (ApiKeyService, api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server),
    (ToolService, tool_service_pb2_grpc.add_ToolServiceServicer_to_server),
    (ActionService, action_service_pb2_grpc.add_ActionServiceServicer_to_server),
    (FlowService, flow_service_pb2_grpc.add_FlowServiceServicer_to_server),
    (ExecutionLogService, execution_log_service_pb2_grpc.add_ExecutionLogServiceServicer_to_server),
]
SERVICE_NAMES = [cls.service.full_name for cls, _ in _SERVICES]


class _GenericHandlersOnly:
    """What the generated ``add_*_to_server`` functions see of the server: their generic handler is
    added, their registered-method handlers are not. grpc.aio keeps one pending request per
    registered method and waits on all of them for every call (``asyncio.wait`` over 54 tasks,
    twice per call): with them, ``GetFlow`` cost ~350 us more server CPU per call than a servicer
    with one method (tests/perf/bench_grpc.py). Generic handlers find the method with one lookup."""

    def __init__(self, server: grpc.aio.Server, *, tolerant_parsing: bool = False) -> None:
        self._server = server
        self._tolerant = tolerant_parsing  # Tolstoy's services: a malformed request is theirs to refuse

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        if self._tolerant:
            handlers = tuple(_TolerantParsing(h) for h in handlers)
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        return None


class _TolerantParsing(grpc.GenericRpcHandler):
    """A service's handlers with request parsers that do not raise (``errors.tolerant``), made
    once per method."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = self._inner.service(handler_call_details)
            if handler is not None:  # only methods of the service are kept: the dict stays bounded
                handler = handler._replace(request_deserializer=tolerant(handler.request_deserializer))
                self._handlers[method] = handler
        return handler


class GrpcServer:
    """A started server: its bound port, and the task that keeps the health status current."""

    def __init__(
        self, container: Container, host: str, port: int, max_message_bytes: int = 1024 * 1024
    ) -> None:
        self.container = container
        self.address = f"{host}:{port}"
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                # the same request size limit as REST (TOLSTOY_MAX_BODY_BYTES): RESOURCE_EXHAUSTED above it
                ("grpc.max_receive_message_length", max_message_bytes),
            ]
        )
        generic = _GenericHandlersOnly(self.server)
        ours = _GenericHandlersOnly(self.server, tolerant_parsing=True)
        for cls, add in _SERVICES:
            add(cls(container), ours)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, generic)
        names = [
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(names), generic
        )
        self.port = 0
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise RuntimeError(f"gRPC could not bind {self.address}")
        await self._check_health()
        await self.server.start()
        self._watch = asyncio.create_task(self._watch_health())
        log.info("gRPC listening on %s", self.address.rsplit(":", 1)[0] + f":{self.port}")
        return self.port

    async def _check_health(self) -> None:
        database = await self.container.system_status().database(with_counts=False)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if database.status == "healthy"
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)
            try:
                await self._check_health()
            except Exception:  # pragma: no cover - the probe itself reports failures as unhealthy
                log.exception("gRPC health check failed")

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """NOT_SERVING at once (load balancers drain), then in-flight calls get ``grace`` seconds."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc(container: Container, host: str, port: int) -> GrpcServer:
    server = GrpcServer(container, host, port, container.settings().max_body_bytes)
    await server.start()
    return server


async def serve_alone(container: Container, host: str, port: int) -> None:
    """`tolstoy grpc`: the gRPC server with the engine's lifecycle, as `tolstoy serve` has it,
    until SIGTERM or SIGINT; then a graceful stop."""
    import signal

    from entrypoints.lifecycle import running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(container):
        server = await start_grpc(container, host, port)
        try:
            await stop.wait()
            log.info("gRPC shutting down")
        finally:
            await server.stop()
