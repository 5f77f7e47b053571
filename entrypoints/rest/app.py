"""The FastAPI application, built by a factory around a container."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from entrypoints.container import Container, tolstoy_version
from entrypoints.lifecycle import running
from entrypoints.rest import action_routes, credential_routes, errors, execution_routes, metrics, routes
from entrypoints.rest.metrics import HttpMetrics
from entrypoints.rest.middleware import BodyLimit
from entrypoints.rest.openapi import document_auth
from entrypoints.rest.resource_router import resource_router

log = logging.getLogger("tolstoy")


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes as the app's own. Our routers carry their prefix, tags and responses
    already, so nothing of ``include_router`` is needed, and its wrapper costs: FastAPI tries each
    included router in turn with scope bookkeeping per route (~80 us to reach GET /flows/{id}
    through a dozen of them, against ~4 us for plain routes)."""
    app.router.routes.extend(router.routes)


def create_app(container: Container) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(container):
            app.state.authenticator = container.authenticator()
            if container.settings().grpc_port:  # gRPC beside REST, on the same use-cases and loop
                from entrypoints.grpc.server import start_grpc

                settings = container.settings()
                app.state.grpc = await start_grpc(container, settings.host, settings.grpc_port)
                app.state.grpc_port = app.state.grpc.port
            # Everything built so far lives as long as the process: keep it out of the cyclic
            # collector's generations, so its full collections stay short under load.
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                if getattr(app.state, "grpc", None) is not None:
                    await app.state.grpc.stop()  # in-flight calls finish before the engine and pools go

    app = FastAPI(
        title="Tolstoy",
        version=tolstoy_version(),
        description="Self-hostable, multi-tenant workflow automation. Tenant endpoints need "
        "`Authorization: Bearer <api key>`; organization management needs the admin token.",
        lifespan=lifespan,
    )
    app.state.container = container
    errors.install(app)
    document_auth(app)
    app.add_middleware(BodyLimit, max_bytes=container.settings().max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=container.metrics())  # outermost: sees 413s too
    routers = [
        routes.health,
        metrics.router,
        routes.organizations,
        routes.api_keys,
        credential_routes.router,  # before /tools/{id}: "/tools/secrets" is not an id
        action_routes.router,
        execution_routes.flows,
        execution_routes.logs,  # before /execution-logs/{id}: "stats" is not an id
        *(resource_router(spec) for spec in routes.RESOURCES),
        routes.audit,
    ]
    for router in routers:
        add_routes(app, router)
    return app
