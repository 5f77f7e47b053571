"""What the application tests share besides fixtures: the admin, a clock, a tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from application.tenancy import Caller, TenantContext
from domain.organization import Organization

ADMIN_TOKEN = "admin-token-for-application-tests"
ADMIN = Caller(admin=True)


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
