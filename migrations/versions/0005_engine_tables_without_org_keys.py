"""the engine's hot tables without a foreign key to organizations

execution_logs keep (org_id, flow_id) -> flows, execution_steps keep execution_id -> executions,
both cascading from the organization through those; outbox events are deleted with their
organization by the application. Each dropped key was a lookup and a row lock on the
organization per inserted row: several per engine checkpoint, all on one row per organization.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("execution_logs", "execution_steps", "outbox_events")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_org_id", type_="foreignkey")


def downgrade() -> None:
    # Rows of organizations that no longer exist would refuse the key: drop them first.
    for table in TABLES:
        rows, orgs = sa.table(table, sa.column("org_id")), sa.table("organizations", sa.column("id"))
        op.execute(sa.delete(rows).where(rows.c.org_id.not_in(sa.select(orgs.c.id))))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_org_id", "organizations", ["org_id"], ["id"], ondelete="CASCADE"
            )
