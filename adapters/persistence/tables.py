"""The schema. Alembic's history in migrations/ must produce exactly this (a test checks)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from adapters.persistence.types import JSONDocument, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 64


def _id() -> Column:
    return Column("id", String(ID), primary_key=True)


def _org_id(*, foreign_key: bool = True) -> Column:
    """The owning organization. ``foreign_key=False`` on the engine's hot tables whose rows go with
    their organization another way (a composite key that cascades, or an explicit delete): every
    foreign key is a lookup and a row lock per inserted row (engine checkpoints insert several)."""
    if not foreign_key:
        return Column("org_id", String(ID), nullable=False)
    return Column("org_id", String(ID), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)


def _timestamps() -> list[Column]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


organizations = Table(
    "organizations",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    *_timestamps(),
)

users = Table(
    "users",
    metadata,
    _id(),
    _org_id(),
    Column("email", String(320), nullable=False),
    Column("name", String(200)),
    *_timestamps(),
    UniqueConstraint("org_id", "email"),
    UniqueConstraint("org_id", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    _org_id(),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_by", String(ID)),
    Column("revoked_at", UTCDateTime()),
    *_timestamps(),
    UniqueConstraint("key_hash"),
    Index(None, "org_id", "created_at"),
)

tools = Table(
    "tools",
    metadata,
    _id(),
    _org_id(),
    Column("name", String(200), nullable=False),
    Column("key", String(64), nullable=False),
    Column("base_url", String(2048), nullable=False),
    Column("auth_type", String(16), nullable=False),
    Column("options", JSONDocument, nullable=False),
    *_timestamps(),
    UniqueConstraint("org_id", "key"),
    UniqueConstraint("org_id", "id"),
)

# (org_id, tool_id) references (org_id, id): the database itself refuses an action that points
# at another organization's tool.
actions = Table(
    "actions",
    metadata,
    _id(),
    _org_id(),
    Column("tool_id", String(ID), nullable=False),
    Column("name", String(200), nullable=False),
    Column("key", String(64), nullable=False),
    Column("method", String(10), nullable=False),
    Column("endpoint", String(2048), nullable=False),
    Column("headers", JSONDocument, nullable=False),
    Column("input_schema", JSONDocument, nullable=False),
    *_timestamps(),
    UniqueConstraint("org_id", "key"),
    ForeignKeyConstraint(["org_id", "tool_id"], ["tools.org_id", "tools.id"]),
    Index(None, "org_id", "tool_id"),
)

flows = Table(
    "flows",
    metadata,
    _id(),
    _org_id(),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("steps", JSONDocument, nullable=False),
    Column("settings", JSONDocument, nullable=False),
    Column("version", Integer, nullable=False),
    *_timestamps(),
    UniqueConstraint("org_id", "id"),
    Index(None, "org_id", "created_at"),
)

# The seed's ExecutionLog, with its two indexes. user_id is kept nullable so that logs outlive
# a deleted user and runs started by an API key alone can be logged.
execution_logs = Table(
    "execution_logs",
    metadata,
    _id(),
    _org_id(foreign_key=False),  # (org_id, flow_id) -> flows: checked there, and cascades with them
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="SET NULL")),
    Column("flow_id", String(ID), nullable=False),
    Column("execution_id", String(ID), nullable=False),
    Column("step_key", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("inputs", JSONDocument, nullable=False),
    Column("outputs", JSONDocument),
    Column("error", JSONDocument),
    *_timestamps(),
    ForeignKeyConstraint(["org_id", "flow_id"], ["flows.org_id", "flows.id"], ondelete="CASCADE"),
    Index(None, "org_id", "flow_id", "execution_id"),
    Index(None, "execution_id", "step_key"),
)

audit_events = Table(
    "audit_events",
    metadata,
    _id(),
    _org_id(),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(ID), nullable=False),
    Column("actor_user_id", String(ID)),
    Column("api_key_id", String(ID)),
    Column("details", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "org_id", "created_at"),
)

# Which tools have credentials, and their names (never values). One row per tool.
tool_credentials = Table(
    "tool_credentials",
    metadata,
    _id(),
    _org_id(),
    Column("tool_id", String(ID), nullable=False),
    Column("keys", JSONDocument, nullable=False),
    Column("backend", String(16), nullable=False),
    Column("created_by", String(ID)),
    *_timestamps(),
    UniqueConstraint("org_id", "tool_id"),
    ForeignKeyConstraint(["org_id", "tool_id"], ["tools.org_id", "tools.id"], ondelete="CASCADE"),
)

# The local secret store: one AES-GCM ciphertext per tool (see adapters/secrets/keyring.py).
secret_values = Table(
    "secret_values",
    metadata,
    Column("org_id", String(ID), nullable=False),
    Column("tool_id", String(ID), nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("key_id", String(32), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("org_id", "tool_id"),
    ForeignKeyConstraint(["org_id", "tool_id"], ["tools.org_id", "tools.id"], ondelete="CASCADE"),
    Index(None, "key_id"),
)

# Events announced by state changes, written in the same transaction; relayed later.
outbox_events = Table(
    "outbox_events",
    metadata,
    _id(),
    _org_id(foreign_key=False),  # deleted with the organization by SqlOrganizationRepository.delete
    Column("type", String(64), nullable=False),
    Column("payload", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("dispatched_at", UTCDateTime()),
    # The payload's executionId, kept apart so that an execution's events are found by an index
    # (WatchExecution) rather than by reading every event of the organization.
    Column("execution_id", String(ID)),
    Index(None, "dispatched_at", "created_at"),
    Index(None, "org_id", "created_at"),
    Index(None, "org_id", "execution_id", "created_at"),
)

# Every version of a flow's steps and settings, immutable once written; executions pin one.
flow_versions = Table(
    "flow_versions",
    metadata,
    _id(),
    _org_id(),
    Column("flow_id", String(ID), nullable=False),
    Column("version", Integer, nullable=False),
    Column("steps", JSONDocument, nullable=False),
    Column("settings", JSONDocument, nullable=False),
    Column("created_by", String(ID)),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("flow_id", "version"),
    ForeignKeyConstraint(["org_id", "flow_id"], ["flows.org_id", "flows.id"], ondelete="CASCADE"),
    Index(None, "org_id", "flow_id"),
)

# One row per execution. lease_owner/lease_until: the worker advancing it (expires if it dies);
# wake_at: when a delay or a retry is due.
executions = Table(
    "executions",
    metadata,
    _id(),
    _org_id(),
    Column("flow_id", String(ID), nullable=False),
    Column("flow_version", Integer, nullable=False),
    Column("user_id", String(ID)),
    Column("status", String(16), nullable=False),
    Column("variables", JSONDocument, nullable=False),
    Column("outputs", JSONDocument),
    Column("error", JSONDocument),
    Column("retry_of", String(ID)),
    Column("resume", Boolean, nullable=False),
    Column("wake_at", UTCDateTime()),
    Column("deadline_at", UTCDateTime()),
    Column("lease_owner", String(ID)),
    Column("lease_until", UTCDateTime()),
    Column("cancel_requested", Boolean, nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("duration_ms", Integer),
    *_timestamps(),
    ForeignKeyConstraint(["org_id", "flow_id"], ["flows.org_id", "flows.id"], ondelete="CASCADE"),
    Index(None, "org_id", "flow_id", "created_at"),
    Index(None, "status", "wake_at"),
    Index(None, "org_id", "status"),
)

# The state of each step of an execution: the checkpoint the engine resumes from.
execution_steps = Table(
    "execution_steps",
    metadata,
    Column("id", String(160), primary_key=True),  # "{execution_id}:{step_id}"
    _org_id(foreign_key=False),  # goes with its execution (which goes with the organization)
    Column("execution_id", String(ID), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("step_id", String(ID), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("output", JSONDocument),
    Column("error", JSONDocument),
    Column("next_at", UTCDateTime()),
    Column("log_id", String(ID)),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    *_timestamps(),
    Index(None, "execution_id"),
)
