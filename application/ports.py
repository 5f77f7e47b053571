"""Ports: what the use-cases need from the outside world, named for the need."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from domain.audit import AuditEvent
from domain.credentials import ToolCredentials
from domain.events import OutboxEvent
from domain.execution import Execution, StepState
from domain.execution_log import ExecutionLog
from domain.flow import Flow, FlowVersion
from domain.organization import ApiKey, Organization, User
from domain.tool import Action, Tool

T = TypeVar("T")

LIMIT_DEFAULT = 50
LIMIT_MAX = 500
OFFSET_MAX = 2**31 - 1  # gRPC's int32; more would overflow the databases' integers (SQLite: 2**63)


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = LIMIT_DEFAULT
    offset: int = 0


class Clock(Protocol):
    def now(self) -> datetime: ...


class Later(Generic[T]):
    """The answer to a read made with a unit of work's commit: a batched unit of work sends it in
    its one statement, with the writes (no round trip of its own). ``value`` is there once the
    unit of work has committed."""

    __slots__ = ("_known", "_value")

    def __init__(self) -> None:
        self._known = False

    def set(self, value: T) -> None:
        self._value, self._known = value, True

    @property
    def value(self) -> T:
        if not self._known:
            raise RuntimeError("a read made at commit was looked at before its unit of work committed")
        return self._value


class TenantRepository(Protocol[T]):
    """Objects owned by one organization. Every read and write is scoped by ``org_id``."""

    async def add(self, entity: T) -> None: ...
    async def get(self, org_id: str, entity_id: str) -> T | None: ...
    async def list(self, org_id: str, page: Page, filters: Mapping[str, Any] | None = None) -> list[T]: ...
    async def update(self, entity: T) -> None: ...
    async def delete(self, org_id: str, entity_id: str) -> bool: ...
    async def count(self) -> int: ...


class OrganizationRepository(Protocol):
    async def add(self, org: Organization) -> None: ...
    async def get(self, org_id: str) -> Organization | None: ...
    async def list(self, page: Page, only_id: str | None = None) -> list[Organization]: ...
    async def update(self, org: Organization) -> None: ...
    async def delete(self, org_id: str) -> bool: ...
    async def count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """What an API key resolves to, and whether a claimed user belongs to its organization."""

    api_key_id: str
    org_id: str
    revoked: bool
    user_in_org: bool


class ApiKeyRepository(TenantRepository[ApiKey], Protocol):
    async def resolve(self, key_hash: str, user_id: str | None) -> KeyOwner | None: ...


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None
    timeout: float | None = None  # seconds; None: the client's default


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]
    content: bytes
    url: str  # after redirects


class HttpClient(Protocol):
    """Outbound HTTP through the egress guard. Raises EgressRefused, UpstreamUnreachable (502) or
    UpstreamTimeout (504); an upstream 4xx/5xx is a response, not an error."""

    async def send(self, request: OutboundRequest) -> OutboundResponse: ...


class Metrics(Protocol):
    """Counters and timings the use-cases report. Labels never carry secrets or free text."""

    def action_executed(
        self, org_id: str, tool_key: str, action_key: str, status: str, seconds: float
    ) -> None: ...
    def auth_injected(self, org_id: str, tool_key: str, auth_type: str, status: str) -> None: ...
    def step_executed(self, org_id: str, flow_id: str, step_key: str, seconds: float) -> None: ...
    def step_retried(self, org_id: str, flow_id: str, step_key: str) -> None: ...
    def step_failed(self, org_id: str, flow_id: str, step_key: str) -> None: ...
    def step_auth_injected(self, org_id: str, step_id: str, auth_type: str) -> None: ...


class SecretStore(Protocol):
    """Where credential values live, per organization and tool. Values never go anywhere else."""

    name: str  # "local" | "aws": recorded with the credentials' metadata

    async def put(self, org_id: str, tool_id: str, values: dict[str, str]) -> None: ...
    async def get(self, org_id: str, tool_id: str) -> dict[str, str] | None: ...
    async def delete(self, org_id: str, tool_id: str) -> None: ...


class LeaseLost(Exception):
    """Another worker holds the execution's lease now (see ``ExecutionRepository.fence``)."""

    def __init__(self, execution_id: str, owner: str | None) -> None:
        super().__init__(f"the lease of {execution_id} is no longer {owner}'s")


class ExecutionRepository(TenantRepository[Execution], Protocol):
    """Executions. ``update`` never writes the lease or the cancel request: those change only
    through the methods below, so a worker's checkpoint cannot undo a cancel request."""

    async def claim(self, execution_id: str, owner: str, until: datetime, now: datetime) -> Execution | None:
        """Take the lease of an unfinished execution when it is free, expired or already ours."""
        ...

    async def renew(self, execution_id: str, owner: str, until: datetime) -> bool: ...
    async def release(self, execution_id: str, owner: str) -> None: ...
    async def request_cancel(self, org_id: str, execution_id: str) -> bool: ...
    async def admit(
        self, started: Execution, waiting: Execution, event: OutboxEvent, flow_limit: int, org_limit: int
    ) -> bool:
        """Admission of a queued execution whose lease ``started.lease_owner`` holds, atomically:
        when fewer than ``flow_limit`` executions of its flow and fewer than ``org_limit`` of its
        organization are running, write ``started`` (as ``update``) and add ``event`` to the
        outbox, and answer True; otherwise write ``waiting`` and let its lease go (as
        ``save_and_release``), and answer False. Admissions of one organization are serialised:
        the counts include every admission committed before. Raises ``LeaseLost`` when the lease
        is another's. Runs at once, also in a batched unit of work (PostgreSQL: one statement)."""
        ...

    async def save_and_release(self, execution: Execution) -> None:
        """Write the execution (lease columns included) and let its lease go, in one statement."""
        ...

    async def fence(self, execution_id: str, owner: str) -> None:
        """This unit of work's writes are kept only if ``owner`` holds the execution's lease when
        they are committed: otherwise this call or the commit raises ``LeaseLost`` and nothing is
        written. A worker that stalled past its lease cannot overwrite the one that took over."""
        ...

    async def due(
        self, now: datetime, limit: int, owner: str | None = None, stale_before: datetime | None = None
    ) -> list[tuple[str, str, datetime | None]]:
        """(org_id, id, wake_at), oldest first, of what needs a push: running executions no live
        worker holds (with ``owner``, also those that worker holds: a restarted worker taking its
        own back), and queued ones whose admission retry is due or that were never picked up
        (created before ``stale_before``, when given)."""
        ...

    async def waiting_for_slot(self, org_id: str, limit: int) -> Later[list[str]]:
        """Queued executions of the organization that were refused a slot, oldest first: read with
        the commit (batched: in the same statement as the writes, which it does not see; otherwise
        at once, in the transaction), after the organization's admissions in progress: an admission
        refused before this unit of work commits is read, one refused after it saw the commit."""
        ...

    async def status_counts(self, org_id: str, flow_id: str) -> dict[str, int]: ...
    async def average_duration_ms(
        self, org_id: str, start: datetime | None, end: datetime | None
    ) -> float | None: ...


class StepStateRepository(Protocol):
    async def add(self, state: StepState) -> None: ...
    async def update(self, state: StepState) -> None: ...
    async def for_execution(self, org_id: str, execution_id: str) -> list[StepState]: ...


class ExecutionLogRepository(TenantRepository[ExecutionLog], Protocol):
    async def stats(self, org_id: str, start: datetime | None, end: datetime | None) -> dict[str, int]:
        """{executions, completed, failed, skipped}: distinct executions and finished step runs."""
        ...


class OutboxRepository(TenantRepository[OutboxEvent], Protocol):
    async def for_execution(
        self, org_id: str, execution_id: str, since: datetime | None, limit: int
    ) -> list[OutboxEvent]:
        """The events of one execution (payload ``executionId``) created at or after ``since``,
        oldest first (``created_at``, then ``id``), at most ``limit``."""
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change that copies kept in memory must drop. ``kind`` is a resource kind
    (``flow``, ``tool``, ``action``...), ``organization`` (the organization and all it owned are
    gone) or ``access`` (what its API keys may do changed: a key revoked, a user deleted);
    without ``entity_id``, every copy kept for ``org_id`` is dropped."""

    kind: str
    org_id: str
    entity_id: str | None = None


class ChangeNotices(Protocol):
    async def publish(self, change: Change) -> None:
        """Announce ``change`` inside the unit of work: every process sharing the database, this
        one included, hears it if and when the unit of work commits (never on rollback)."""
        ...


class ChangeFeed(Protocol):
    """Other processes' change notices (those sharing the database), heard in this one."""

    async def start(self, on_change: Callable[[Change], None], on_live: Callable[[bool], None]) -> None:
        """Listen from now on. ``on_live(True)`` once every later change is sure to be heard;
        ``on_live(False)`` as soon as that is no longer sure (the connection is lost)."""
        ...

    async def aclose(self) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Repositories handed out here act inside it; nothing is kept until commit."""

    organizations: OrganizationRepository
    users: TenantRepository[User]
    api_keys: ApiKeyRepository
    tools: TenantRepository[Tool]
    actions: TenantRepository[Action]
    flows: TenantRepository[Flow]
    execution_logs: ExecutionLogRepository
    flow_versions: TenantRepository[FlowVersion]
    executions: ExecutionRepository
    execution_steps: StepStateRepository
    audit: TenantRepository[AuditEvent]
    credentials: TenantRepository[ToolCredentials]
    outbox: OutboxRepository
    changes: ChangeNotices

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False, batched: bool = False) -> UnitOfWork:
        """``batched``: the writes may be held back and sent at commit as one atomic statement,
        so reads inside see only what was committed before (for writers that never read their
        own writes, like the engine's checkpoints). Adapters may ignore it."""
        ...


class DatabaseProbe(Protocol):
    """Health of the database: a round trip, in seconds; raises when the database is unreachable."""

    async def ping(self) -> float: ...


class CacheProbe(Protocol):
    async def ping(self) -> float: ...


# --- code sandbox -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SandboxRun:
    """One piece of user code to run. ``code`` is a function body whose ``return`` value is the
    output, or (``expression=True``) a single expression whose value is the output (``executeIf``,
    conditions). The code sees ``context`` (and its alias ``input``): ``{variables, stepOutputs,
    meta, utils}``, where the sandbox supplies ``utils.log/warn/error`` and captures what they log."""

    code: str
    language: str  # "javascript" | "python" | "go" | "rust"
    context: dict[str, Any]  # {variables, stepOutputs, meta}: JSON values only
    timeout_ms: int = 30_000
    expression: bool = False


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What a run gave. A failed run is a result, not an exception: ``error`` is
    ``{message, code, stack?}`` with code one of SYNTAX_ERROR, RUNTIME_ERROR, TIMEOUT, MEMORY_LIMIT,
    OUTPUT_TOO_LARGE, UNSUPPORTED_LANGUAGE, SANDBOX_UNAVAILABLE, SANDBOX_CRASHED (the runtime itself
    stopped while running it)."""

    success: bool
    output: Any = None
    logs: tuple[dict[str, Any], ...] = ()  # {type: log|warn|error, message, data?, timestamp}
    error: dict[str, Any] | None = None
    execution_ms: int = 0
    session_id: str | None = None


class SandboxSession(Protocol):
    """Runs for one execution on one worker; never shared between executions. Nothing a run
    leaves behind is visible to the next run."""

    async def run(self, run: SandboxRun) -> SandboxResult: ...


class Sandbox(Protocol):
    name: str  # "v8" | "daytona"

    def session(self, scope: str | None = None) -> AbstractAsyncContextManager[SandboxSession]:
        """``scope`` is the tenant: a sandbox may hand a cleaned runtime from one session to a
        later session of the same scope, never to another scope."""
        ...

    async def start(self, run: SandboxRun) -> str:
        """Start a run in the background (async code steps); returns its session id."""
        ...

    async def poll(self, session_id: str) -> SandboxResult | None:
        """The result of a background run, or None while it is still running."""
        ...

    async def stop(self, session_id: str) -> None:
        """Stop a background run whose result nobody will ask for any more (its step was cancelled
        or gave up waiting), and free what it holds. Best effort; never raises."""
        ...


# --- flow engine ----------------------------------------------------------------------------------


class Scheduler(Protocol):
    """Runs ``AdvanceExecution`` for an execution now or at a given time, on some worker."""

    async def schedule(self, org_id: str, execution_id: str, at: datetime | None = None) -> None: ...
    async def abort(self, execution_id: str) -> None:
        """Stop in-flight work of the execution where the engine can (best effort)."""
        ...
