"""What the application tests share besides fixtures: the admin, clocks, a counting unit of work, a tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from application.tenancy import Caller, TenantContext
from domain.organization import Organization

ADMIN_TOKEN = "admin-token-for-application-tests"
ADMIN = Caller(admin=True)


class FakeMonotonic:
    """A ``time.monotonic`` that moves only when a test moves ``now``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingUow:
    """A unit-of-work factory that counts the units of work opened, and the read-only ones
    (each a database round trip)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.opened, self.reads = inner, 0, 0

    def __call__(self, *, read_only: bool = False, batched: bool = False) -> Any:
        self.opened += 1
        self.reads += read_only
        return self.inner(read_only=read_only, batched=batched)


class TickingClock:
    """Each reading is one millisecond after the last, so creation order is observable."""

    def __init__(self) -> None:
        self.current = datetime(2030, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Tenant:
    org: Organization
    api_key: str  # plaintext
    ctx: TenantContext  # as the Authenticator answers it, attributed to a user of the org

    @property
    def authorization(self) -> str:
        return f"Bearer {self.api_key}"
