"""Copies of stored objects kept in memory, and the change notices that make them go.

Flows, tools and actions are read far more often than they change. ``ReadCache`` keeps the ones
the use cases read by id (``TenantResources.get``: REST and gRPC reads; starting an execution and
executing an action still read the database); a change committed by any process sharing the
database is announced (``UnitOfWork.changes``) and drops the copy everywhere: this process hears its
own changes at commit, the others through a ``ChangeFeed`` (PostgreSQL ``LISTEN``/``NOTIFY``).

Rules that keep a copy from outliving its object:
- Nothing is kept or served while no feed is live: without one a change made elsewhere could go
  unheard. When the feed comes up, and whenever it goes down, every copy is dropped.
- A copy read before a change was heard is never kept: ``token()`` is taken before the read and
  ``put`` refuses it if any change (or feed event) was heard in between.
- Each copy also expires after ``ttl_seconds``, a bound should a feed fail without saying so.
So a process sees another's change as soon as the notice reaches it (PostgreSQL delivers it at
commit; typically well under a millisecond on one host).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from application.ports import Change
from application.tenancy import KeyOwnerCache

ORGANIZATION = "organization"  # Change.kind: the organization and everything it owned are gone
ACCESS = "access"  # Change.kind: what an organization's API keys may do changed


class ReadCache:
    """Objects by (kind, organization, id); bounded (least recently used go first)."""

    def __init__(
        self, max_entries: int = 1_000, ttl_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, Any]] = OrderedDict()
        self._generation = 0
        self.live = False
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def token(self) -> int | None:
        """Take before reading what may be ``put``; None: do not keep what you read."""
        return self._generation if self.live and self.max_entries > 0 else None

    def get(self, kind: str, org_id: str, entity_id: str) -> Any | None:
        if not self.live:
            return None
        key = (kind, org_id, entity_id)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, kind: str, org_id: str, entity_id: str, value: Any, token: int | None) -> None:
        if token is None or token != self._generation or not self.live:
            return  # something changed (or the feed moved) while it was being read
        key = (kind, org_id, entity_id)
        self._entries[key] = (self._clock() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, change: Change) -> None:
        self._generation += 1
        if change.kind == ORGANIZATION or change.entity_id is None:
            doomed = [key for key in self._entries if key[1] == change.org_id]
        else:
            doomed = [(change.kind, change.org_id, change.entity_id)]
        for key in doomed:
            self._entries.pop(key, None)

    def set_live(self, live: bool) -> None:
        self._generation += 1
        self._entries.clear()
        self.live = live


class LocalCopies:
    """Everything this process keeps copies of, and what each change notice drops from it."""

    def __init__(self, entities: ReadCache, keys: KeyOwnerCache) -> None:
        self.entities = entities
        self.keys = keys

    def apply(self, change: Change) -> None:
        if change.kind in (ORGANIZATION, ACCESS):
            self.keys.clear()  # API keys resolved by this process: they may no longer hold
        if change.kind != ACCESS:  # access is no object kept here: reads in flight may keep theirs
            self.entities.drop(change)

    def set_live(self, live: bool) -> None:
        """The feed went down or came back: notices may have been missed meanwhile."""
        self.keys.clear()
        self.entities.set_live(live)
