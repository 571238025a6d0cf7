"""Fixtures for the gateway tests: a real Pub/Sub emulator (the project's own, in this process), topics per test,
the local stack's Graph API stand-in (a real HTTP server serving the documented shapes), secrets generated per
test, the app.

Nothing secret is in the repository: every app secret, token and API key is generated here, per test.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.local.graph_stand_in import GraphStandIn, serve

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "gateway"


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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis (Debian's redis-server, installed with apt when missing and possible) on a free port, nothing
    saved to disk: the gateway's shared state."""
    import os
    import shutil
    import subprocess

    from infra.local.processes import free_port, stop_process
    from infra.local.stack import port_open

    if shutil.which("redis-server") is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False)
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    """The Graph API stand-in (infra.local.graph_stand_in) on a free port, leads served from memory."""
    stand_in = GraphStandIn(token=secrets.token_urlsafe(24))
    server = serve(stand_in)
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
