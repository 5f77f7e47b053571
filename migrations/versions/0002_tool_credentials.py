"""tool credentials

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:35:31.607555
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secret_values",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("tool_id", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id", "tool_id"],
            ["tools.org_id", "tools.id"],
            name=op.f("fk_secret_values_org_id_tool_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "tool_id", name=op.f("pk_secret_values")),
    )
    with op.batch_alter_table("secret_values", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secret_values_key_id"), ["key_id"], unique=False)

    op.create_table(
        "tool_credentials",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("tool_id", sa.String(length=64), nullable=False),
        sa.Column("keys", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id", "tool_id"],
            ["tools.org_id", "tools.id"],
            name=op.f("fk_tool_credentials_org_id_tool_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_tool_credentials_org_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_credentials")),
        sa.UniqueConstraint("org_id", "tool_id", name=op.f("uq_tool_credentials_org_id_tool_id")),
    )


def downgrade() -> None:
    op.drop_table("tool_credentials")
    with op.batch_alter_table("secret_values", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secret_values_key_id"))

    op.drop_table("secret_values")
