"""outbox events found by execution

outbox_events.execution_id (the payload's executionId) with an index on (org_id, execution_id,
created_at): WatchExecution reads one execution's events instead of every event of the
organization. Existing events get theirs from their payload.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("execution_id", sa.String(length=64), nullable=True))
    events = sa.table(
        "outbox_events",
        sa.column("execution_id", sa.String()),
        sa.column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )
    op.execute(sa.update(events).values(execution_id=events.c.payload["executionId"].as_string()))
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_events_org_id_execution_id_created_at"),
            ["org_id", "execution_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_events_org_id_execution_id_created_at"))
        batch_op.drop_column("execution_id")
