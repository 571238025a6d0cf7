"""When Pub/Sub does not confirm a publish, the gateway answers 503 with Retry-After (so the provider retries),
in about the publish timeout, and never 2xx."""

from __future__ import annotations

import socket
import time

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.gateway.conftest import fixture_bytes
from tests.gateway.test_webhooks import meta_sign, twilio_post

pytestmark = pytest.mark.e2e


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def unreachable_client(make_config, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{closed_port()}")
    with TestClient(create_app(make_config(publish_timeout=1.0))) as c:
        yield c


def test_pubsub_down_is_503_with_retry_after(unreachable_client, graph, test_secrets):
    c = unreachable_client
    started = time.monotonic()
    r = c.post("/v1/leads", json={"external_id": "P-1", "phone": "+14155550123"},
               headers={"X-API-Key": test_secrets.api_key})
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert time.monotonic() - started < 5
    assert twilio_post(c, "/webhooks/twilio/sms", fixture_bytes("twilio_sms.form"),
                       test_secrets.twilio_auth_token).status_code == 503
    graph.leads["900000000000001"] = fixture_bytes("meta_graph_lead.json")
    body = fixture_bytes("meta_leadgen_webhook.json")
    r = c.post("/webhooks/meta", content=body,
               headers={"X-Hub-Signature-256": meta_sign(body, test_secrets.meta_app_secret)})
    assert r.status_code == 503  # neither the lead nor the kept notification could be published: Meta retries
    assert 'outcome="publish_failed"' in c.get("/metrics").text


def test_unknown_topic_is_503(make_config, bus, test_secrets):
    config = make_config(input_topic=f"projects/{bus.project}/topics/missing")
    with TestClient(create_app(config)) as c:
        r = c.post("/webhooks/knowlarity", content=fixture_bytes("knowlarity_call.json"),
                   headers={"X-Leadflow-Secret": test_secrets.knowlarity_secret})
        assert r.status_code == 503


def test_a_repeat_after_503_is_tried_afresh(make_config, bus, test_secrets):
    """An Idempotency-Key does not pin a 503: the retry publishes once Pub/Sub is back."""
    app = create_app(make_config(publish_timeout=1.0))
    door = app.state.door
    real = door.publisher

    class Flaky:
        calls = 0

        async def publish(self, topic, data, attributes):
            Flaky.calls += 1
            if Flaky.calls == 1:
                from gateway.publishing import PublishFailed

                raise PublishFailed("down")
            return await real.publish(topic, data, attributes)

        def close(self):
            real.close()

    door.publisher = Flaky()
    headers = {"X-API-Key": test_secrets.api_key, "Idempotency-Key": "retry-1"}
    with TestClient(app) as c:
        assert c.post("/v1/leads", json={"external_id": "F-1", "phone": "+1415"}, headers=headers).status_code == 503
        r = c.post("/v1/leads", json={"external_id": "F-1", "phone": "+1415"}, headers=headers)
        assert r.status_code == 202 and "idempotent-replayed" not in r.headers
    assert len(bus.pull("input", 1)) == 1
