"""The gateway's state shared by all its instances, in Redis (``LEADFLOW_GATEWAY_STATE_URL=redis://HOST:6379/0``).

With one instance the in-memory stores are exact (``gateway.idempotency``, ``gateway.clients``). Behind a load
balancer with several, each would know only its own requests: a client's repeat or duplicate that reaches another
instance would be published again, and each instance would grant the whole rate limit. With a state URL every
instance uses the same Redis (Memorystore on GCP, infra/deploy/terraform/gateway.tf):

* rate limits: ``limits``' own Redis storage, the same moving windows (``gateway.clients.RateLimits``);
* ``Idempotency-Key``: one key per (client, key) holding the request's fingerprint and, once answered, the response;
  written with ``SET NX``, so exactly one instance goes first. A repeat waits while the first is in flight; when the
  first has held it longer than ``lease`` seconds (its instance died mid-request) the repeat takes over;
* external ids: one key per (client, external id), claimed with ``SET NX`` (empty while the lead is being
  published, then its message id), kept for ``external_id_ttl`` seconds.

Redis keys are SHA-256 hashes of the client id and the key or external id, so Redis holds no caller's text. When
Redis does not answer, the request is answered 503 (a retry is safe): the gateway never publishes what it cannot
remember.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time

from gateway.idempotency import IdempotencyStore, KeyReused, StateUnavailable, StoredResponse

PREFIX = "leadflow-gateway"
POLL_SECONDS = 0.05
DEFAULT_LEASE_SECONDS = 60.0  # longer than any request may take (publish timeouts are seconds)
# delete the key only while it still holds what this caller read (compare and delete, atomically)
_DELETE_IF_SAME = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _name(kind: str, client_id: str, key: object) -> str:
    return f"{PREFIX}:{kind}:" + hashlib.sha256(f"{client_id}\x1f{key}".encode()).hexdigest()


def connect(url: str):
    """A Redis client (redis-py's asyncio one) for ``redis://`` / ``rediss://`` URLs."""
    import redis.asyncio

    return redis.asyncio.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


async def _call(awaitable):  # redis-py's failures, as the one error the API answers 503 to
    import redis.exceptions

    try:
        return await awaitable
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
        raise StateUnavailable(f"shared state unavailable: {type(e).__name__}") from None


class RedisIdempotency:
    """``IdempotencyStore``'s contract, shared through Redis."""

    fingerprint = staticmethod(IdempotencyStore.fingerprint)

    def __init__(self, redis, ttl: float, lease: float = DEFAULT_LEASE_SECONDS):
        self.redis, self.ttl, self.lease = redis, ttl, lease

    async def begin(self, client_id: str, key: str, fingerprint: str) -> StoredResponse | None:
        name = _name("idem", client_id, key)
        pending = json.dumps({"fp": fingerprint, "state": "pending", "at": time.time()})
        while True:
            if await _call(self.redis.set(name, pending, nx=True, ex=max(1, int(self.ttl)))):
                return None
            raw = await _call(self.redis.get(name))
            if raw is None:
                continue  # expired or abandoned between the two calls
            entry = json.loads(raw)
            if entry["fp"] != fingerprint:
                raise KeyReused("idempotency key reused with another request")
            if entry["state"] == "done":
                return StoredResponse(entry["status"], base64.b64decode(entry["body"]),
                                      tuple(tuple(h) for h in entry["headers"]))
            if time.time() - entry["at"] > self.lease:  # its instance died: take the key over
                await _call(self.redis.eval(_DELETE_IF_SAME, 1, name, raw))
                continue
            await asyncio.sleep(POLL_SECONDS)

    async def finish(self, client_id: str, key: str, response: StoredResponse) -> None:
        name = _name("idem", client_id, key)
        if response.status >= 500:  # only final answers are kept: the retry goes afresh
            await _call(self.redis.delete(name))
            return
        raw = await _call(self.redis.get(name))
        if raw is None:
            return
        entry = json.loads(raw)
        done = {"fp": entry["fp"], "state": "done", "at": entry["at"], "status": response.status,
                "body": base64.b64encode(response.body).decode("ascii"), "headers": list(response.headers)}
        await _call(self.redis.set(name, json.dumps(done), xx=True, ex=max(1, int(self.ttl))))


class RedisExternalIds:
    """``ExternalIds``' contract, shared through Redis."""

    def __init__(self, redis, ttl: float):
        self.redis, self.ttl = redis, max(1, int(ttl))

    async def claim(self, client_id: str, external_id: object) -> tuple[bool, str | None]:
        name = _name("ext", client_id, external_id)
        if await _call(self.redis.set(name, "", nx=True, ex=self.ttl)):
            return True, None
        first = await _call(self.redis.get(name))
        return False, (first.decode() if first else None)

    async def settle(self, client_id: str, external_id: object, message_id: str) -> None:
        await _call(self.redis.set(_name("ext", client_id, external_id), message_id, ex=self.ttl))

    async def release(self, client_id: str, external_id: object) -> None:
        await _call(self.redis.eval(_DELETE_IF_SAME, 1, _name("ext", client_id, external_id), ""))
