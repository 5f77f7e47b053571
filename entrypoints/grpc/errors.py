"""Errors to gRPC statuses: the domain's errors by kind (common.proto lists the mapping), with the
field errors in a google.rpc.BadRequest; anything unexpected is INTERNAL, logged, never explained."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    UpstreamTimeout,
    UpstreamUnreachable,
    ValidationFailed,
)

log = logging.getLogger("tolstoy.grpc")

INTERNAL_MESSAGE = "Internal server error"

CODE_OF: list[tuple[type[DomainError], int]] = [
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (Conflict, code_pb2.FAILED_PRECONDITION),  # a state that forbids the change
    (ValidationFailed, code_pb2.INVALID_ARGUMENT),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (PermissionDenied, code_pb2.PERMISSION_DENIED),
    (NotFound, code_pb2.NOT_FOUND),
    (PayloadTooLarge, code_pb2.RESOURCE_EXHAUSTED),
    (UpstreamUnreachable, code_pb2.UNAVAILABLE),
    (UpstreamTimeout, code_pb2.DEADLINE_EXCEEDED),
    (Unavailable, code_pb2.UNAVAILABLE),
]


def code_of(exc: DomainError) -> int:
    return next((code for cls, code in CODE_OF if isinstance(exc, cls)), code_pb2.INVALID_ARGUMENT)


def status_of(exc: DomainError) -> grpc.Status:
    """The rich status of a domain error: its message, and its field errors as a BadRequest."""
    status = status_pb2.Status(code=code_of(exc), message=exc.message)
    if exc.errors:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=e.field, description=e.message, reason=e.code
                )
                for e in exc.errors
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return rpc_status.to_status(status)


def _internal(exc: BaseException, method: str) -> grpc.Status:
    log.error("Unhandled error in %s", method, exc_info=exc)
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE))


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    if isinstance(exc, DomainError):
        await context.abort_with_status(status_of(exc))
    await context.abort_with_status(_internal(exc, method))


class _Malformed:
    """What a request that is not a valid message of its type parses to (see ``tolerant``)."""


MALFORMED = _Malformed()
MALFORMED_MESSAGE = "The request is not a valid message of its type"


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A request parser that answers ``MALFORMED`` instead of raising: grpc.aio would answer a
    parser's error itself, as UNKNOWN quoting the parser ("String field had bad UTF-8"...); the
    handlers below answer INVALID_ARGUMENT, as REST answers a body that is not JSON."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # protobuf's DecodeError, or its recursion limit
            return MALFORMED

    return parse


def _malformed() -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=MALFORMED_MESSAGE))


def unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is MALFORMED:
            await context.abort_with_status(_malformed())
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # CancelledError (deadline, client gone) is not an Exception
            await _abort(context, exc, method)

    return handle


def streaming(
    behavior: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if request is MALFORMED:
            await context.abort_with_status(_malformed())
        try:
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method)

    return handle
