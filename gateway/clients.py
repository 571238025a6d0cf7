"""Callers of our own API: who a key belongs to, and how many requests each may make (``limits``).

Keys are looked up by their SHA-256 (``config.key_hash``), so the configuration never holds a key itself. A
client's limit is in ``limits`` notation (``10000/hour``, ``100/minute``); a request over it is answered 429 with
``Retry-After``, the seconds until the moving window lets the next one through. Counts live in this process's
memory, where N gateway instances would give a client up to N times its limit, or in the Redis every instance shares
(``LEADFLOW_GATEWAY_STATE_URL``: ``limits``' own Redis storage, docs/gateway.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.config import ApiClient, key_hash
from gateway.idempotency import StateUnavailable

API_KEY_HEADER = "X-API-Key"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of a request: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    headers = {k.lower(): v for k, v in headers.items()}
    auth = headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get(API_KEY_HEADER.lower())
    return key.strip() if key and key.strip() else None


class ClientRegistry:
    def __init__(self, clients: Iterable[ApiClient]):
        self._by_hash = {c.key_sha256: c for c in clients}

    def authenticate(self, key: str | None) -> ApiClient | None:
        return self._by_hash.get(key_hash(key)) if key else None


class RateLimits:
    """Per-client moving windows, in memory or (``redis_url``) in Redis."""

    def __init__(self, redis_url: str | None = None):
        storage = MemoryStorage() if redis_url is None else RedisStorage(
            "async+" + redis_url, implementation="redispy", key_prefix="leadflow-gateway")
        self._limiter = MovingWindowRateLimiter(storage)
        self._parsed: dict[str, object] = {}

    def _limit(self, notation: str):
        if notation not in self._parsed:
            self._parsed[notation] = parse(notation)
        return self._parsed[notation]

    async def hit(self, client: ApiClient, cost: int = 1) -> int | None:
        """None when the request may go on (and is counted), else the seconds to wait (Retry-After)."""
        limit = self._limit(client.rate_limit)
        try:
            if await self._limiter.hit(limit, client.client_id, cost=cost):
                return None
            reset = (await self._limiter.get_window_stats(limit, client.client_id)).reset_time
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise StateUnavailable(f"shared state unavailable: {type(e).__name__}") from None
        return max(1, math.ceil(reset - time.time()))
