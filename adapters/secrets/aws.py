"""AWS Secrets Manager as the secret store (SECRETS_BACKEND=aws).

One secret per tool, named ``tolstoy/{orgId}/{toolId}``, holding the values as a JSON object.
boto3 is synchronous, so every call runs in a worker thread, never on the event loop. Reads are
cached for 5 minutes; when AWS fails, a value already read is served stale (and the failure
logged, never the value) rather than failing every action that needs it. Retries with exponential
backoff are botocore's "standard" mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import UpstreamUnreachable

log = logging.getLogger("tolstoy.secrets.aws")

CACHE_SECONDS = 300.0


def secret_name(org_id: str, tool_id: str) -> str:
    return f"tolstoy/{org_id}/{tool_id}"


def _not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


class AwsSecretStore:
    name = "aws"

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        *,
        cache_seconds: float = CACHE_SECONDS,
        max_attempts: int = 5,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
    ) -> None:
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
        )
        self._client = client or boto3.client(
            "secretsmanager", region_name=region, endpoint_url=endpoint_url, config=config
        )
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(getattr(self._client, operation), **kwargs)

    async def put(self, org_id: str, tool_id: str, values: dict[str, str]) -> None:
        name = secret_name(org_id, tool_id)
        payload = orjson.dumps(values).decode()
        try:
            try:
                await self._call("put_secret_value", SecretId=name, SecretString=payload)
            except ClientError as exc:
                if not _not_found(exc):
                    raise
                await self._call(
                    "create_secret",
                    Name=name,
                    SecretString=payload,
                    Tags=[
                        {"Key": "tolstoy:orgId", "Value": org_id},
                        {"Key": "tolstoy:toolId", "Value": tool_id},
                    ],
                )
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamUnreachable(
                f"AWS Secrets Manager refused the write: {type(exc).__name__}"
            ) from None
        self._cache[name] = (self._clock() + self._ttl, dict(values))

    async def get(self, org_id: str, tool_id: str) -> dict[str, str] | None:
        name = secret_name(org_id, tool_id)
        cached = self._cache.get(name)
        if cached is not None and cached[0] > self._clock():
            return dict(cached[1])
        try:
            answer = await self._call("get_secret_value", SecretId=name)
        except ClientError as exc:
            if _not_found(exc):
                self._cache.pop(name, None)
                return None
            return self._stale(name, cached, exc)
        except BotoCoreError as exc:
            return self._stale(name, cached, exc)
        values = orjson.loads(answer["SecretString"])
        self._cache[name] = (self._clock() + self._ttl, values)
        return dict(values)

    def _stale(
        self, name: str, cached: tuple[float, dict[str, str]] | None, exc: Exception
    ) -> dict[str, str]:
        if cached is None:
            raise UpstreamUnreachable(f"AWS Secrets Manager is unavailable: {type(exc).__name__}")
        log.warning(
            "AWS Secrets Manager failed (%s); serving the cached value of %s", type(exc).__name__, name
        )
        return dict(cached[1])

    async def delete(self, org_id: str, tool_id: str) -> None:
        name = secret_name(org_id, tool_id)
        self._cache.pop(name, None)
        try:
            await self._call("delete_secret", SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if not _not_found(exc):
                raise UpstreamUnreachable(
                    f"AWS Secrets Manager refused the delete: {type(exc).__name__}"
                ) from None
        except BotoCoreError as exc:
            raise UpstreamUnreachable(f"AWS Secrets Manager is unavailable: {type(exc).__name__}") from None
