"""Errors the core raises. Entry points map them to transport statuses (HTTP, gRPC)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of a request, in the seed's error format."""

    field: str
    message: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


class DomainError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors: list[FieldError] = list(errors or [])


class ValidationFailed(DomainError):
    """The request is malformed or breaks a rule (400)."""

    def __init__(self, errors: list[FieldError], message: str = "Validation failed") -> None:
        super().__init__(message, errors)


class InvalidReference(ValidationFailed):
    """A referenced object does not exist in the caller's organization (400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__([FieldError(field, message, "invalid_reference")], message)


class NotFound(DomainError):
    """The object does not exist, or belongs to another tenant (404)."""

    def __init__(self, resource: str, object_id: str) -> None:
        super().__init__(f"{resource} with id '{object_id}' not found")
        self.resource = resource
        self.object_id = object_id


class Conflict(DomainError):
    """The request conflicts with the current state: a duplicate key, a forbidden transition (409)."""


class AlreadyExists(Conflict):
    """The object would duplicate one that exists: a key that must be unique (409)."""


class Unauthenticated(DomainError):
    """No credentials, or credentials that are unknown or revoked (401)."""


class PermissionDenied(DomainError):
    """Valid credentials that may not do this (403)."""


class PayloadTooLarge(DomainError):
    """A body, a document or a collection exceeds a configured limit (413)."""


class UpstreamUnreachable(DomainError):
    """The upstream could not be reached or answered unusably (502)."""


class UpstreamTimeout(DomainError):
    """The upstream did not answer in time (504)."""


class Unavailable(DomainError):
    """Tolstoy cannot take the request right now, e.g. its database stayed busy; the same request
    a moment later can succeed (503 with Retry-After)."""
