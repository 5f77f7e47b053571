"""the executions waiting for a slot, read under the admission lock

PostgreSQL only: ``tolstoy_waiting_for_slot(org_id, limit)`` takes the organization's admission
lock (``tolstoy_admission_room``'s, migration 0007) and then reads, on a snapshot of its own, the
queued executions of the organization that were refused a slot (oldest first, at most ``limit``).
An execution that concludes calls it in the statement that concludes it, so the lock is held until
that commits: an admission refused meanwhile has either committed before the read (and is read,
and called in) or counts after the conclusion has committed (and finds the slot free). Without the
lock, a refusal committing in the millisecond around a conclusion went unseen by both and waited
for its admission retry (30 s).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 15:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION tolstoy_waiting_for_slot(p_org_id text, p_limit integer) RETURNS text[]
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    found text[];
BEGIN
    -- tolstoy_admission_room's lock, held until the calling transaction ends.
    PERFORM pg_advisory_xact_lock(1953459315, hashtext(p_org_id));
    -- A query of a volatile function takes a new snapshot: refusals committed meanwhile are seen.
    SELECT coalesce(array_agg(w.id ORDER BY w.created_at, w.id), '{}')
      INTO found
      FROM (SELECT id, created_at
              FROM executions
             WHERE org_id = p_org_id AND status = 'queued' AND wake_at IS NOT NULL
             ORDER BY created_at, id
             LIMIT p_limit) AS w;
    RETURN found;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tolstoy_waiting_for_slot(text, integer)")
