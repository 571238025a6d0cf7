"""Two gateway instances sharing one real Redis (``LEADFLOW_GATEWAY_STATE_URL``): a repeat, a duplicate and the
rate limit are answered the same whichever instance a request reaches; without Redis the API answers 503 and
publishes nothing."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from infra.local.processes import free_port

pytestmark = pytest.mark.e2e


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def lead(external_id: str) -> dict:
    return {"external_id": external_id, "phone": "+14155550123", "full_name": "Shared State"}


@pytest.fixture
def two_instances(make_config, redis_url):
    db = redis_url.rsplit("/", 1)[0] + "/0"
    config = make_config(state_url=db)
    with TestClient(create_app(config)) as a, TestClient(create_app(config)) as b:
        yield a, b


def test_a_repeat_or_duplicate_on_another_instance_is_answered_as_on_the_first(two_instances, bus, test_secrets):
    a, b = two_instances
    key = {**auth(test_secrets.api_key), "Idempotency-Key": "order-" + uuid.uuid4().hex}
    first = a.post("/v1/leads", json=lead("S-1"), headers=key)
    again = b.post("/v1/leads", json=lead("S-1"), headers=key)
    assert first.status_code == again.status_code == 202, first.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert b.post("/v1/leads", json=lead("S-2"), headers=key).status_code == 422  # reused with another body
    dup = b.post("/v1/leads", json=lead("S-1"), headers=auth(test_secrets.api_key))
    assert dup.status_code == 409 and dup.json()["first_message_id"] == first.json()["message_id"]
    assert len(bus.pull("input", 1)) == 1  # published once, by the first instance


def test_the_rate_limit_counts_every_instance(two_instances, bus, test_secrets):
    a, b = two_instances  # globex may make 3 requests a minute (tests/gateway/conftest.py)
    answers = [(a if i % 2 else b).post("/v1/leads", json=lead(f"R-{uuid.uuid4().hex}"),
                                        headers=auth(test_secrets.other_api_key)).status_code for i in range(5)]
    assert answers == [202, 202, 202, 429, 429]


def test_without_redis_nothing_is_published(make_config, bus, test_secrets):
    config = make_config(state_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with TestClient(create_app(config)) as c:
        r = c.post("/v1/leads", json=lead("N-1"), headers=auth(test_secrets.api_key))
        assert r.status_code == 503 and r.json()["error"] == "state_unavailable" and r.headers["retry-after"]
        assert c.get("/metrics").text.count('outcome="state_unavailable"') == 1
    assert bus.pull("input", 0, timeout=0.5) == []
