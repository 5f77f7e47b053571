"""The default secret store: AES-256-GCM ciphertexts in the database (table ``secret_values``).

One ciphertext per tool holds all its values, bound to ``{org_id}/{tool_id}`` as associated data.
Each call is its own short transaction; callers never hold a write transaction around it (on
SQLite that would wait on itself).
"""

from __future__ import annotations

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SystemClock
from adapters.persistence.tables import secret_values as t
from adapters.secrets.keyring import Keyring


def _context(org_id: str, tool_id: str) -> str:
    return f"{org_id}/{tool_id}"


class LocalSecretStore:
    name = "local"

    def __init__(self, engine: AsyncEngine, keyring: Keyring, clock: SystemClock | None = None) -> None:
        self._engine = engine
        self._keyring = keyring
        self._clock = clock or SystemClock()

    async def put(self, org_id: str, tool_id: str, values: dict[str, str]) -> None:
        token = self._keyring.encrypt(orjson.dumps(values), _context(org_id, tool_id))
        now = self._clock.now()
        where = (t.c.org_id == org_id, t.c.tool_id == tool_id)
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(t)
                .where(*where)
                .values(ciphertext=token, key_id=self._keyring.current_id, updated_at=now)
            )
            if changed.rowcount == 0:
                await conn.execute(
                    insert(t).values(
                        org_id=org_id,
                        tool_id=tool_id,
                        ciphertext=token,
                        key_id=self._keyring.current_id,
                        created_at=now,
                        updated_at=now,
                    )
                )

    async def get(self, org_id: str, tool_id: str) -> dict[str, str] | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(t.c.ciphertext).where(t.c.org_id == org_id, t.c.tool_id == tool_id))
            ).first()
        if row is None:
            return None
        return orjson.loads(self._keyring.decrypt(row.ciphertext, _context(org_id, tool_id)))

    async def delete(self, org_id: str, tool_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.org_id == org_id, t.c.tool_id == tool_id))

    async def rotate(self, rotated: Keyring, batch: int = 200) -> int:
        """Re-encrypt every ciphertext not made by ``rotated``'s current key; returns how many.

        ``rotated`` must still hold the old keys. Rows are processed in batches, each in its own
        transaction, so a crash leaves every row readable (old or new key) and a rerun finishes.
        """
        done = 0
        while True:
            async with self._engine.begin() as conn:
                rows = (
                    await conn.execute(
                        select(t.c.org_id, t.c.tool_id, t.c.ciphertext)
                        .where(t.c.key_id != rotated.current_id)
                        .limit(batch)
                    )
                ).all()
                for row in rows:
                    context = _context(row.org_id, row.tool_id)
                    token = rotated.encrypt(rotated.decrypt(row.ciphertext, context), context)
                    await conn.execute(
                        update(t)
                        .where(t.c.org_id == row.org_id, t.c.tool_id == row.tool_id)
                        .values(ciphertext=token, key_id=rotated.current_id)
                    )
            done += len(rows)
            if len(rows) < batch:
                return done
