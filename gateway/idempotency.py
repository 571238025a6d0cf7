"""``Idempotency-Key``: a repeat of a request is answered with the first response, and published nothing.

Keys are scoped per client and kept for ``ttl`` seconds: here in this process's memory (at most ``max_keys``, the oldest
dropped first), which a second gateway instance or a restart does not know; ``gateway.shared_state`` keeps the same in
Redis for every instance (``LEADFLOW_GATEWAY_STATE_URL``, docs/gateway.md). A repeat that arrives
while the first is still publishing waits for it. A key reused with a different body is refused (422): answering it
with the first response would hide that the second body was never published. Only final answers are kept (2xx and
4xx); after a 5xx the client's retry with the same key is tried afresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_KEY_LENGTH = 255
MAX_REMEMBERED_EXTERNAL_IDS = 1_000_000


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass
class _Entry:
    fingerprint: str
    created: float
    done: asyncio.Future


class KeyReused(ValueError):
    """The key was first used with another request body."""


class StateUnavailable(RuntimeError):
    """The shared state (Redis) did not answer: the request cannot be checked against it (answered 503)."""


class IdempotencyStore:
    def __init__(self, ttl: float, max_keys: int):
        self.ttl = ttl
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()

    def _evict(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if len(self._entries) <= self.max_keys and now - entry.created <= self.ttl:
                break
            if not entry.done.done():
                break  # never drop one in flight: its waiters would hang
            del self._entries[key]

    async def begin(self, client_id: str, key: str, fingerprint: str) -> StoredResponse | None:
        """The first response for a repeat (waiting for it if still in flight), or None: this request goes first
        and must call ``finish`` (or ``abandon``)."""
        now = time.monotonic()
        self._evict(now)
        entry = self._entries.get((client_id, key))
        if entry is not None and now - entry.created > self.ttl and entry.done.done():
            del self._entries[(client_id, key)]
            entry = None
        if entry is None:
            self._entries[(client_id, key)] = _Entry(fingerprint, now, asyncio.get_running_loop().create_future())
            return None
        if entry.fingerprint != fingerprint:
            raise KeyReused("idempotency key reused with another request")
        stored = await asyncio.shield(entry.done)
        if stored is None:  # the first attempt ended in a 5xx: this one goes afresh
            return await self.begin(client_id, key, fingerprint)
        return stored

    async def finish(self, client_id: str, key: str, response: StoredResponse) -> None:
        entry = self._entries.get((client_id, key))
        if entry is None or entry.done.done():
            return
        if response.status >= 500:
            del self._entries[(client_id, key)]
            entry.done.set_result(None)
        else:
            entry.done.set_result(response)


class ExternalIds:
    """(client, external_id) -> first message id, the most recent ``limit`` of them. A lead being published holds
    its id as a claim (message id ``""``), so two requests racing with the same id publish it once."""

    def __init__(self, limit: int = MAX_REMEMBERED_EXTERNAL_IDS):
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def claim(self, client_id: str, external_id: object) -> tuple[bool, str | None]:
        """(True, None) when this id is new and now claimed; else (False, the first message id, or None while the
        first is still being published)."""
        key = (client_id, str(external_id))
        if key in self._seen:
            return False, self._seen[key] or None
        self._seen[key] = ""
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True, None

    async def settle(self, client_id: str, external_id: object, message_id: str) -> None:
        self._seen[(client_id, str(external_id))] = message_id

    async def release(self, client_id: str, external_id: object) -> None:
        """The claim of a lead that was not published: the client's retry may send it."""
        key = (client_id, str(external_id))
        if self._seen.get(key) == "":
            del self._seen[key]
