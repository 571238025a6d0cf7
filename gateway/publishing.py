"""Publishing to Pub/Sub: the attributes every message carries, and the publisher the endpoints await.

``PubSubPublisher`` wraps the official client (``google-cloud-pubsub``; it honours ``PUBSUB_EMULATOR_HOST``). An
endpoint awaits ``publish`` and answers 2xx only once the returned message id exists: Pub/Sub has the message.
The client's own retries are bounded by the same deadline as the wait, so a publish that timed out is not sent
later behind the 503's back (the provider's retry would then publish it twice).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

# The attribute names the pipeline reads (transforms.parsers.registry reads ``provider``); values are strings.
PROVIDER = "provider"
RECEIVED_AT = "received_at"
REQUEST_ID = "gateway_request_id"
CLIENT_ID = "client_id"
BATCH_MAX_LATENCY = 0.002  # seconds a publish waits for others to share its Publish RPC


class PublishFailed(RuntimeError):
    """Pub/Sub did not confirm the publish in time (or refused it): the request is answered 503."""


class Publisher(Protocol):
    async def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str: ...

    def close(self) -> None: ...


def rfc3339_utc(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_request_id() -> str:
    return str(uuid.uuid4())


def attributes(provider: str, request_id: str, received_at: str, client_id: str | None = None,
               **extra: str | None) -> dict[str, str]:
    """The attributes of a published lead message (extras that are None are left out)."""
    out = {PROVIDER: provider, RECEIVED_AT: received_at, REQUEST_ID: request_id}
    if client_id is not None:
        out[CLIENT_ID] = client_id
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


class PubSubPublisher:
    """The official Pub/Sub publisher client behind an awaitable ``publish``."""

    def __init__(self, timeout: float):
        from google.api_core import exceptions, retry
        from google.cloud import pubsub_v1

        self.timeout = timeout
        # every request waits for its batch: the client's default 10 ms of gathering was most of a request's latency
        # and, at a given concurrency, halved the requests per second (figures for docs/performance.md)
        self._client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=BATCH_MAX_LATENCY))
        transient = retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                                            exceptions.InternalServerError, exceptions.Aborted,
                                            exceptions.ResourceExhausted, exceptions.Unknown)
        self._retry = retry.Retry(initial=0.05, maximum=1.0, multiplier=2.0, predicate=transient,
                                  timeout=timeout)

    async def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        try:
            future = self._client.publish(topic, data, retry=self._retry, timeout=self.timeout, **attributes)
            # a little more than the client's own deadline: its error is more telling than our timeout
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout + 1.0)
        except TimeoutError:
            raise PublishFailed("publish not confirmed in time") from None
        except Exception as e:  # the client's errors (NotFound, Unavailable, RetryError, ...) all mean: not published
            raise PublishFailed(f"publish failed: {type(e).__name__}") from None

    def close(self) -> None:
        self._client.stop()
