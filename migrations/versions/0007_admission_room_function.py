"""admission in one statement

PostgreSQL only: ``tolstoy_admission_room(org_id, flow_id, flow_limit, org_limit)`` takes the
organization's admission lock (a transaction-scoped advisory lock, class ``0x746F6C73``, as the
engine took it before) and then counts the running executions of the flow and of the organization.
Being VOLATILE, its count runs on a snapshot taken after the lock is held, so a statement that calls
it sees every admission committed before, even though the statement itself started earlier: the
engine admits an execution (lock, count, write the execution and its ``flow.started`` event) in one
statement instead of a transaction of six round trips. SQLite has no functions and needs none
(its writer lock serialises admissions).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 11:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION tolstoy_admission_room(
    p_org_id text, p_flow_id text, p_flow_limit integer, p_org_limit integer
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    in_flow bigint;
    in_org bigint;
BEGIN
    -- Held until the calling transaction ends: admissions of one organization go one at a time.
    PERFORM pg_advisory_xact_lock(1953459315, hashtext(p_org_id));
    -- A query of a volatile function takes a new snapshot: this one sees what committed meanwhile.
    SELECT count(*) FILTER (WHERE flow_id = p_flow_id), count(*)
      INTO in_flow, in_org
      FROM executions
     WHERE org_id = p_org_id AND status = 'running';
    RETURN in_flow < p_flow_limit AND in_org < p_org_limit;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tolstoy_admission_room(text, text, integer, integer)")
