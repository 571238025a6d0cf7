"""A small local CRM webhook: the HTTP endpoint Pub/Sub push subscriptions deliver lead offers to.

One ``ThreadingHTTPServer`` on a free port serves any number of named hooks under ``/crm/NAME``; each hook answers
every POST with its configured status (200: accepted, anything else: refused, so Pub/Sub retries it and finally
dead-letters it) and records what it received. It decodes both push formats: the wrapped JSON envelope and the
unwrapped body with ``x-goog-pubsub-*`` headers.

    with CrmEndpoint({"nyc": 200, "broken": 503}) as crm:
        crm.url("nyc")            # http://127.0.0.1:PORT/crm/nyc -> a push subscription's endpoint
        crm.received("nyc")       # [PushDelivery(...), ...]

Printing a delivery shows ids and routing attributes only, never the lead's personal data.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class PushDelivery:
    """One push request as the endpoint saw it."""

    hook: str
    message_id: str
    attributes: dict[str, str]
    data: bytes
    delivery_attempt: int | None
    subscription: str
    wrapped: bool
    headers: dict[str, str] = field(repr=False, default_factory=dict)
    body: bytes = field(repr=False, default=b"")

    def summary(self) -> str:
        """A line without personal data: the lead id and its routing attributes."""
        keys = ("lead_id", "team", "territory", "priority", "agent")
        routing = " ".join(f"{k}={self.attributes[k]}" for k in keys if k in self.attributes)
        attempt = f" attempt={self.delivery_attempt}" if self.delivery_attempt else ""
        return f"[{self.hook}] message {self.message_id}: {routing}{attempt}"


def decode_push(hook: str, body: bytes, headers: dict[str, str]) -> PushDelivery:
    """A push request's message, wrapped (JSON envelope) or unwrapped (raw data, metadata in headers)."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "x-goog-pubsub-message-id" in lower or not lower.get("content-type", "").startswith("application/json"):
        attributes = {k: v for k, v in headers.items() if not k.lower().startswith("x-goog-pubsub-")
                      and k.lower() not in _TRANSPORT_HEADERS}
        attempt = lower.get("x-goog-pubsub-delivery-attempt")
        return PushDelivery(hook, lower.get("x-goog-pubsub-message-id", ""), attributes, body,
                            int(attempt) if attempt else None, lower.get("x-goog-pubsub-subscription-name", ""),
                            wrapped=False, headers=headers, body=body)
    try:
        envelope = json.loads(body)
        message = envelope["message"]
        return PushDelivery(hook, message["messageId"], dict(message.get("attributes", {})),
                            base64.b64decode(message.get("data", "")), envelope.get("deliveryAttempt"),
                            envelope["subscription"], wrapped=True, headers=headers, body=body)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a Pub/Sub push envelope: {exc}") from None


_TRANSPORT_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent", "content-length",
                      "content-type", "authorization"}


class CrmEndpoint:
    """Named webhooks on one local HTTP server; ``statuses`` maps hook name -> the HTTP status it answers."""

    def __init__(self, statuses: dict[str, int], host: str = "127.0.0.1", port: int = 0, on_delivery=None):
        self.statuses = dict(statuses)
        self.on_delivery = on_delivery  # called with each accepted PushDelivery (the demo prints them)
        self._received: dict[str, list[PushDelivery]] = {name: [] for name in statuses}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="crm-endpoint", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, hook: str) -> str:
        return f"{self.base_url}/crm/{hook}"

    def received(self, hook: str) -> list[PushDelivery]:
        with self._lock:
            return list(self._received[hook])

    def start(self) -> CrmEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CrmEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, delivery: PushDelivery, status: int) -> None:
        with self._lock:
            self._received[delivery.hook].append(delivery)
        if self.on_delivery is not None and status < 300:
            self.on_delivery(delivery)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook = self.path.split("?")[0].removeprefix("/crm/")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hook not in endpoint.statuses:
                    self._answer(404)
                    return
                try:
                    delivery = decode_push(hook, body, dict(self.headers.items()))
                except ValueError:
                    self._answer(400)
                    return
                status = endpoint.statuses[hook]
                endpoint._record(delivery, status)
                self._answer(status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep request lines (and their URLs) out of the logs
                pass

        return Handler


DEMO_TEAM = "us-east-sales"
_DLQ_SOURCE = "CloudPubSubDeadLetterSourceSubscription"
DEMO_ATTEMPTS = 5


@contextmanager
def demo_crm_push(cfg, team: str = DEMO_TEAM, out=print) -> Iterator[CrmEndpoint]:
    """For ``make demo``: a local CRM that receives one team's offers and prints them, and a failing CRM
    (answers 503) whose hot offers are retried with backoff and go to the CRM dead-letter topic after
    DEMO_ATTEMPTS pushes. Creates both push subscriptions on the stack ``cfg`` (a running
    ``infra.local.stack.StackConfig``) before the pipeline publishes; on exit it waits for the retries to finish
    and prints what each endpoint got. Wrap the part of the demo that runs the pipeline::

        with demo_crm_push(cfg):
            ...  # start the pipeline, publish, wait until every unit is accounted for
    """
    from dataclasses import replace

    from infra.local import stack
    from schemas.crm_endpoints import CrmEndpoint as EndpointConfig

    hooks = {f"demo-{team}": 200, "demo-failing": 503}
    with CrmEndpoint(hooks, on_delivery=lambda d: out(f"      CRM {d.summary()}")) as crm:
        endpoints = (
            EndpointConfig(name=f"demo-{team}", url="https://crm.example.com/demo",
                           local_url=crm.url(f"demo-{team}"), filter=f'attributes.team = "{team}"',
                           min_backoff_seconds=0.1, max_backoff_seconds=1),
            EndpointConfig(name="demo-failing", url="https://crm.example.com/failing",
                           local_url=crm.url("demo-failing"), filter='attributes.priority = "hot"',
                           min_backoff_seconds=0.1, max_backoff_seconds=0.5, max_delivery_attempts=DEMO_ATTEMPTS),
        )
        stack.ensure_pubsub_resources(replace(cfg, crm_endpoints=endpoints))
        out(f"      CRM push: {crm.url(f'demo-{team}')} receives team {team}'s offers; {crm.url('demo-failing')} "
            f"refuses every hot offer ({DEMO_ATTEMPTS} attempts, then the CRM dead-letter topic)")
        yield crm
        dead = _drain_dead_letters(cfg, lambda: {d.message_id for d in crm.received("demo-failing")})
        failing = crm.received("demo-failing")
        out(f"      CRM push: team {team} received {len(crm.received(f'demo-{team}'))} offers; the failing CRM got "
            f"{len(failing)} pushes of {len({d.message_id for d in failing})} offers, {dead} dead-lettered to "
            f"{cfg.topic('crm_dead_letters')}")


def _drain_dead_letters(cfg, refused, timeout: float = 20.0) -> int:
    """Ack the CRM dead letters of the demo's failing endpoint until every offer it refused is there."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    subscription = cfg.subscription("crm-delivery-dead-letters-ops")
    dead = 0
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        response = subscriber.pull(subscription=subscription, max_messages=500, return_immediately=True, timeout=10)
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
            dead += sum(m.message.attributes.get(_DLQ_SOURCE) == "crm-push-demo-failing"
                        for m in response.received_messages)
        if dead >= len(refused()):
            break
        time.sleep(0.2)
    subscriber.close()
    return dead
