"""Who is calling: the tenant context every tenant use-case receives, and authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from application.ports import KeyOwner, UnitOfWorkFactory
from domain.errors import PermissionDenied, Unauthenticated

API_KEY_PREFIX = "tsk_"
PREFIX_LENGTH = 12


@dataclass(frozen=True, slots=True)
class TenantContext:
    """An authenticated call on behalf of one organization, optionally attributed to a user."""

    org_id: str
    user_id: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling an organization-management endpoint: the operator, or one organization."""

    admin: bool
    tenant: TenantContext | None = None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    plaintext: str
    prefix: str
    key_hash: str


def hash_api_key(plaintext: str) -> str:
    # Keys carry 256 random bits, so a fast hash is as good as a slow one here, and lets us
    # look keys up by hash with an index instead of comparing against every stored key.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_api_key() -> NewApiKey:
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(plaintext, plaintext[:PREFIX_LENGTH], hash_api_key(plaintext))


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("Missing Authorization header: send 'Authorization: Bearer <api key>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization header must be 'Bearer <api key>'")
    return token


class KeyOwnerCache:
    """Recently resolved API keys, so that most requests skip a database round trip.

    A change that can withdraw access (a key revoked, a user or an organization deleted) is
    announced as a change notice (``application.cache``) and clears the cache: at commit in the
    process that made it, as soon as the notice arrives in the others (PostgreSQL). Entries also
    expire after ``ttl_seconds`` (the bound where no notices travel between processes, e.g. SQLite
    shared by several); 0 turns the cache off.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[tuple[str, str | None], tuple[float, KeyOwner]] = {}
        self._generation = 0  # moves on every clear: an answer read before it is not kept

    def token(self) -> int:
        """Take before reading a key from the database; ``put`` refuses the answer if the cache was
        cleared meanwhile (the key may have been revoked after it was read)."""
        return self._generation

    def get(self, key_hash: str, user_id: str | None) -> KeyOwner | None:
        entry = self._entries.get((key_hash, user_id))
        if entry is None:
            return None
        if entry[0] < self._clock():
            self._entries.pop((key_hash, user_id), None)
            return None
        return entry[1]

    def put(self, key_hash: str, user_id: str | None, owner: KeyOwner, token: int) -> None:
        if self._ttl <= 0 or token != self._generation:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.pop(next(iter(self._entries)))  # the oldest insertion goes first
        self._entries[(key_hash, user_id)] = (self._clock() + self._ttl, owner)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()


class Authenticator:
    """Turns transport credentials (REST headers, gRPC metadata) into a caller.

    The same rules hold for every transport: an API key names an organization; ``X-Org-ID``
    must be that organization; ``X-User-ID`` must be one of its users.
    """

    def __init__(
        self, uow_factory: UnitOfWorkFactory, admin_token: str | None, cache: KeyOwnerCache | None = None
    ) -> None:
        self._uow = uow_factory
        self._admin_token = admin_token.encode() if admin_token else None
        self.cache = cache or KeyOwnerCache(0)

    def _is_admin_token(self, token: str) -> bool:
        return self._admin_token is not None and hmac.compare_digest(token.encode(), self._admin_token)

    async def tenant(
        self, authorization: str | None, org_header: str | None, user_header: str | None
    ) -> TenantContext:
        token = _bearer(authorization)
        if self._is_admin_token(token):
            raise Unauthenticated(
                "The admin token manages organizations only; tenant endpoints need an organization API key"
            )
        return await self._resolve(token, org_header, user_header)

    async def caller(
        self, authorization: str | None, org_header: str | None, user_header: str | None
    ) -> Caller:
        token = _bearer(authorization)
        if self._is_admin_token(token):
            return Caller(admin=True)
        return Caller(admin=False, tenant=await self._resolve(token, org_header, user_header))

    def require_admin(self, caller: Caller) -> None:
        if not caller.admin:
            raise PermissionDenied("This operation needs the admin token")

    async def _resolve(self, token: str, org_header: str | None, user_header: str | None) -> TenantContext:
        user_id = user_header.strip() if user_header and user_header.strip() else None
        key_hash = hash_api_key(token)
        owner = self.cache.get(key_hash, user_id)
        if owner is None:
            generation = self.cache.token()
            async with self._uow(read_only=True) as uow:
                owner = await uow.api_keys.resolve(key_hash, user_id)
            if owner is not None and not owner.revoked:
                self.cache.put(key_hash, user_id, owner, generation)
        if owner is None or owner.revoked:
            raise Unauthenticated("Invalid or revoked API key")
        if org_header is not None and org_header.strip() and org_header.strip() != owner.org_id:
            raise PermissionDenied("X-Org-ID does not match the organization of the API key")
        if user_id is not None and not owner.user_in_org:
            raise PermissionDenied("X-User-ID is not a user of this organization")
        return TenantContext(org_id=owner.org_id, user_id=user_id, api_key_id=owner.api_key_id)
