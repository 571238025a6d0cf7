"""What every endpoint shares: the config, the publisher, the counters, and the one way a request is published.

Counters are by endpoint and outcome (``meta.accepted``, ``twilio_sms.rejected_signature``, ...) and served at
``/metrics``; log lines name the request id, endpoint and outcome only (no body, no header values, no PII).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse

from gateway import publishing
from gateway.clients import ClientRegistry, RateLimits
from gateway.config import GatewayConfig
from gateway.idempotency import ExternalIds, IdempotencyStore
from gateway.meta_graph import GraphClient
from gateway.publishing import Publisher, PublishFailed
from gateway.status import LeadStatusReader

log = logging.getLogger("leadflow.gateway")
RETRY_AFTER_SECONDS = 5  # after a 503: Pub/Sub outages are usually short, providers back off on their own too
PUBLISHED_REMEMBERED = 500_000  # API message ids whose sender this instance remembers (for status lookups)


@dataclass
class Door:
    config: GatewayConfig
    publisher: Publisher
    graph: GraphClient
    clients: ClientRegistry
    rate_limits: RateLimits = field(default_factory=RateLimits)
    idempotency: IdempotencyStore | None = None
    counters: Counter = field(default_factory=Counter)
    external_ids: ExternalIds = field(default_factory=ExternalIds)
    status: LeadStatusReader | None = None
    published_by: OrderedDict = field(default_factory=OrderedDict)  # message id -> client id, the newest kept

    def __post_init__(self):
        if self.config.state_url:  # every instance shares one Redis (gateway.shared_state)
            from gateway import shared_state

            redis = shared_state.connect(self.config.state_url)
            self.rate_limits = RateLimits(self.config.state_url)
            self.idempotency = shared_state.RedisIdempotency(redis, self.config.idempotency_ttl)
            self.external_ids = shared_state.RedisExternalIds(redis, self.config.external_id_ttl)
        elif self.idempotency is None:
            self.idempotency = IdempotencyStore(self.config.idempotency_ttl, self.config.idempotency_max_keys)

    def sent_by(self, message_id: str) -> str | None:
        """The API client that published ``message_id`` through this instance (None: another, or forgotten)."""
        return self.published_by.get(message_id)

    def count(self, endpoint: str, outcome: str, request_id: str | None = None, n: int = 1) -> None:
        """Count an outcome and log it: refusals and failures at INFO, the everyday ``accepted`` at DEBUG (at a
        thousand requests a second a line each is the log's cost, and /metrics counts them anyway)."""
        self.counters[f"{endpoint}.{outcome}"] += n
        level = logging.DEBUG if outcome == "accepted" else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "gateway %s %s request=%s", endpoint, outcome, request_id or "-")

    async def publish(self, endpoint: str, provider: str, body: bytes, request_id: str, received_at: str,
                      client_id: str | None = None, topic: str | None = None, **extra: str | None) -> str:
        """Publish one message (input topic unless ``topic``); its message id, or PublishFailed (counted)."""
        attrs = publishing.attributes(provider, request_id, received_at, client_id, **extra)
        try:
            message_id = await self.publisher.publish(topic or self.config.input_topic, body, attrs)
        except PublishFailed as e:
            self.count(endpoint, "publish_failed", request_id)
            log.warning("gateway %s publish failed request=%s: %s", endpoint, request_id, e)
            raise
        self.counters[f"{endpoint}.published"] += 1
        if client_id is not None:
            self.published_by[message_id] = client_id
            while len(self.published_by) > PUBLISHED_REMEMBERED:
                self.published_by.popitem(last=False)
        return message_id

    def metrics_text(self) -> str:
        lines = ["# TYPE leadflow_gateway_requests counter"]
        for key in sorted(self.counters):
            endpoint, _, outcome = key.partition(".")
            lines.append(f'leadflow_gateway_requests{{endpoint="{endpoint}",outcome="{outcome}"}} {self.counters[key]}')
        return "\n".join(lines) + "\n"


def unavailable(request_id: str) -> JSONResponse:
    return JSONResponse({"error": "publish_failed", "request_id": request_id}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def refused(status: int, error: str, request_id: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "request_id": request_id}, status_code=status, headers=dict(headers or {}))


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")
