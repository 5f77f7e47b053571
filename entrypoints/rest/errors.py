"""Every error answers in the seed's format: {statusCode, message, error, errors:[{field,message,code}]}."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from domain.errors import (
    Conflict,
    DomainError,
    FieldError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    UpstreamTimeout,
    UpstreamUnreachable,
    ValidationFailed,
)
from entrypoints.rest.responses import JSONBytes, json

log = logging.getLogger("tolstoy.http")

STATUS_OF: list[tuple[type[DomainError], int]] = [
    (ValidationFailed, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UpstreamUnreachable, 502),
    (Unavailable, 503),
    (UpstreamTimeout, 504),
]

# pydantic error types -> the zod-style codes the seed's clients know
_CODES = {
    "missing": "required",
    "json_invalid": "invalid_json",
    "extra_forbidden": "unrecognized_keys",
    "string_too_short": "too_small",
    "too_short": "too_small",
    "greater_than_equal": "too_small",
    "greater_than": "too_small",
    "string_too_long": "too_big",
    "too_long": "too_big",
    "less_than_equal": "too_big",
    "less_than": "too_big",
    "literal_error": "invalid_enum_value",
    "enum": "invalid_enum_value",
    "string_pattern_mismatch": "invalid_string",
}


def error_body(status: int, message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "message": message,
        "error": HTTPStatus(status).phrase,
        "errors": [e.as_dict() for e in errors or []],
    }


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> tuple[str, list[FieldError]]:
    errors: list[FieldError] = []
    malformed = False
    for err in exc.errors():
        kind = err.get("type", "")
        if kind == "json_invalid":
            malformed = True
            errors.append(
                FieldError(
                    "body", f"Malformed JSON: {err.get('ctx', {}).get('error', 'invalid')}", "invalid_json"
                )
            )
            continue
        code = _CODES.get(
            kind, "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else kind
        )
        message = "Required" if kind == "missing" else str(err.get("msg", "Invalid value"))
        errors.append(FieldError(_field(tuple(err.get("loc", ()))), message, code))
    return ("Malformed JSON body" if malformed else "Validation failed"), errors


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONBytes:
        status = next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 400)
        headers = {"Retry-After": "1"} if isinstance(exc, Unavailable) else None
        return json(error_body(status, exc.message, exc.errors), status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONBytes:
        message, errors = validation_errors(exc)
        return json(error_body(400, message, errors), 400)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONBytes:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and message == "Not Found":
            message = "Route not found"
        return json(error_body(exc.status_code, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONBytes:
        # The traceback goes to the log; the client learns nothing about internals.
        log.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return json(error_body(500, "Internal server error"), 500)
