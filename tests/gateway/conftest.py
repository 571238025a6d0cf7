"""Fixtures for the gateway tests: a real Pub/Sub emulator (the project's own, in this process), topics per test,
a Graph API stand-in (a real HTTP server serving the documented shapes), secrets generated per test, the app.

Nothing secret is in the repository: every app secret, token and API key is generated here, per test.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "gateway"
GRAPH_VERSION = "v21.0"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="session")
def pubsub_address() -> Iterator[str]:
    """The project's Pub/Sub emulator on a free port; PUBSUB_EMULATOR_HOST points at it for the session."""
    from infra.local.pubsub_emulator import serve

    emulator = serve(port=0)
    mp = pytest.MonkeyPatch()
    mp.setenv("PUBSUB_EMULATOR_HOST", emulator.address)
    try:
        yield emulator.address
    finally:
        mp.undo()
        emulator.stop()


@dataclass
class Bus:
    """The topics of one test's project, with a subscription on each to read back what the gateway published."""

    project: str
    subscriber: object
    subscriptions: dict[str, str] = field(default_factory=dict)

    def pull(self, topic_key: str, expected: int, timeout: float = 5.0) -> list:
        """Pull until ``expected`` messages arrived (or the timeout), then a short wait to see no more come."""
        sub = self.subscriptions[topic_key]
        got: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.subscriber.pull(request={"subscription": sub, "max_messages": 100,
                                                     "return_immediately": True}, timeout=5)
            if response.received_messages:
                self.subscriber.acknowledge(request={"subscription": sub, "ack_ids": [
                    m.ack_id for m in response.received_messages]})
                got.extend(m.message for m in response.received_messages)
            elif len(got) >= expected:
                break
            else:
                time.sleep(0.05)
        return got


@pytest.fixture
def bus(pubsub_address) -> Iterator[Bus]:
    from google.cloud import pubsub_v1

    from schemas.resources import Resources

    project = "gw-" + uuid.uuid4().hex[:10]
    resources = Resources(project)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    out = Bus(project, subscriber)
    for key in ("input", "dead_letters"):
        publisher.create_topic(request={"name": resources.topic(key)})
        sub = resources.subscription(f"test-{key.replace('_', '-')}")
        subscriber.create_subscription(request={"name": sub, "topic": resources.topic(key), "ack_deadline_seconds": 60})
        out.subscriptions[key] = sub
    yield out
    subscriber.close()
    publisher.stop()


@dataclass
class GraphStandIn:
    """A tiny Graph API: ``GET /v21.0/{lead_id}`` with the page token (``access_token`` parameter or
    ``Authorization: Bearer``, both accepted by Graph) answers the documented lead object or error."""

    token: str
    leads: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)  # served first, one per request
    requests: list[str] = field(default_factory=list)
    forms: dict[str, list[list[dict]]] = field(default_factory=dict)  # form id -> pages of lead objects (bulk read)
    filters: list[str] = field(default_factory=list)  # the ``filtering`` parameter of each first bulk-read page
    url: str = ""


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    stand_in = GraphStandIn(token=secrets.token_urlsafe(24))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parsed = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parsed.query)
            lead_id = parsed.path.rsplit("/", 1)[-1]
            stand_in.requests.append(lead_id)
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if stand_in.token not in (bearer, *query.get("access_token", [])):  # the documented invalid-token error
                return self._send(400, json.dumps({"error": {
                    "message": "Invalid OAuth access token - Cannot parse access token", "type": "OAuthException",
                    "code": 190, "fbtrace_id": "AbCdEfGhIjM"}}).encode())
            if lead_id == "leads":  # bulk read, GET /{form_id}/leads: {"data": [...], "paging": {"cursors", "next"}}
                return self._bulk_read(parsed.path.rsplit("/", 2)[-2], query)
            queued = stand_in.failures.get(lead_id)
            if queued:
                return self._send(*queued.pop(0))
            if lead_id in stand_in.leads:
                return self._send(200, stand_in.leads[lead_id])
            return self._send(400, fixture_bytes("meta_graph_error_unknown_id.json"))

        def _bulk_read(self, form_id: str, query: dict) -> None:
            if "after" not in query:
                stand_in.filters.extend(query.get("filtering", []))
            queued = stand_in.failures.get(f"{form_id}/leads")
            if queued:
                return self._send(*queued.pop(0))
            pages = stand_in.forms.get(form_id, [[]])
            index = int(query.get("after", ["0"])[0])
            body: dict = {"data": pages[index], "paging": {"cursors": {"before": str(index), "after": str(index + 1)}}}
            if index + 1 < len(pages):
                body["paging"]["next"] = f"{stand_in.url}/{form_id}/leads?limit=2&after={index + 1}"
            return self._send(200, json.dumps(body).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}/{GRAPH_VERSION}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Secrets:
    meta_app_secret: str
    meta_verify_token: str
    google_ads_key: str
    google_form_key: str
    twilio_auth_token: str
    knowlarity_secret: str
    email_secret: str
    api_key: str
    other_api_key: str


@pytest.fixture
def test_secrets() -> Secrets:
    return Secrets(*(secrets.token_urlsafe(24) for _ in range(9)))


@pytest.fixture
def make_config(bus, graph, test_secrets):
    """The gateway config of a test: its project's topics, the Graph stand-in, the generated secrets."""
    from gateway.config import ApiClient, GatewayConfig, key_hash

    def make(**overrides):
        values = dict(
            project=bus.project, public_url="http://testserver",
            meta_app_secret=test_secrets.meta_app_secret, meta_verify_token=test_secrets.meta_verify_token,
            meta_page_access_token=graph.token, meta_graph_url=graph.url, meta_fetch_backoff=0.01,
            google_ads_key=test_secrets.google_ads_key,
            google_ads_form_keys={"40000000001": test_secrets.google_form_key},
            twilio_auth_token=test_secrets.twilio_auth_token, knowlarity_secret=test_secrets.knowlarity_secret,
            email_webhook_secret=test_secrets.email_secret,
            api_clients=(ApiClient("acme", key_hash(test_secrets.api_key), "50/minute"),
                         ApiClient("globex", key_hash(test_secrets.other_api_key), "3/minute")),
            publish_timeout=5.0,
        )
        values.update(overrides)
        return GatewayConfig(**values)

    return make


@pytest.fixture
def client(make_config):
    """A TestClient (httpx) on the app with the real Pub/Sub publisher."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(make_config())) as c:
        yield c
