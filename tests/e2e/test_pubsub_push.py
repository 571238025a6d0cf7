"""Push subscriptions against a real local HTTP endpoint (infra.local.crm_endpoint), as Pub/Sub documents them:
the JSON envelope, the success codes, retries with the retry policy's exponential backoff, the dead-letter policy,
payload unwrapping with metadata headers, filters on attributes and the OIDC token's claims."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from infra.local.crm_endpoint import CrmEndpoint
from tests.e2e.conftest import gcloud_gap

pytestmark = pytest.mark.e2e

PROJECT = "leadflow-e2e"


def _name(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clients(each_pubsub_emulator):
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    publisher.stop()
    subscriber.close()


def _topic(publisher, tag: str = "push-topic") -> str:
    path = publisher.topic_path(PROJECT, _name(tag))
    publisher.create_topic(name=path)
    return path


def _push_sub(subscriber, topic: str, endpoint: str, tag: str = "push", **kwargs) -> str:
    path = subscriber.subscription_path(PROJECT, _name(tag))
    push_config = {"push_endpoint": endpoint, **kwargs.pop("push_config", {})}
    subscriber.create_subscription(request={"name": path, "topic": topic, "push_config": push_config, **kwargs})
    return path


def _wait(predicate, timeout: float = 15.0) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _backoff(low: float, high: float) -> dict:
    return {"minimum_backoff": duration_pb2.Duration(nanos=int(low * 1e9)),
            "maximum_backoff": duration_pb2.Duration(nanos=int(high * 1e9))}


def test_wrapped_envelope_and_every_documented_success_code_acknowledges(clients, request, each_pubsub_emulator):
    gcloud_gap(request, each_pubsub_emulator, "push_202")
    publisher, subscriber = clients
    codes = {"ok200": 200, "ok201": 201, "ok202": 202, "ok204": 204}
    with CrmEndpoint(codes) as crm:
        topic = _topic(publisher)
        subs = {hook: _push_sub(subscriber, topic, crm.url(hook)) for hook in codes}
        message_id = publisher.publish(topic, b'{"lead_id": "L1"}', team="nyc-sales", lead_id="L1").result(10)
        assert _wait(lambda: all(crm.received(h) for h in codes))
        time.sleep(1.5)  # an acknowledged message is not delivered again (the fixture's ack deadline is 1 s)
        for hook, sub in subs.items():
            (delivery,) = crm.received(hook)
            assert delivery.wrapped and delivery.headers["Content-Type"] == "application/json"
            assert (delivery.message_id, delivery.subscription, delivery.data) == (message_id, sub,
                                                                                  b'{"lead_id": "L1"}')
            assert delivery.attributes == {"team": "nyc-sales", "lead_id": "L1"}
            assert delivery.delivery_attempt is None  # no dead-letter policy


def test_envelope_fields_as_documented(clients):
    publisher, subscriber = clients
    with CrmEndpoint({"hook": 200}) as crm:
        topic = _topic(publisher)
        _push_sub(subscriber, topic, crm.url("hook"))
        publisher.publish(topic, b"\x00\xffraw", a="1").result(10)
        assert _wait(lambda: crm.received("hook"))
        (delivery,) = crm.received("hook")
        envelope = json.loads(delivery.body)
        message = envelope["message"]
        assert base64.b64decode(message["data"]) == b"\x00\xffraw"
        assert message["messageId"] == message["message_id"] == delivery.message_id
        assert message["publishTime"] == message["publish_time"]
        assert message["publishTime"].endswith("Z") and "T" in message["publishTime"]  # RFC 3339, UTC


def test_a_refusing_endpoint_is_retried_with_backoff_then_dead_lettered(clients, request, each_pubsub_emulator):
    gcloud_gap(request, each_pubsub_emulator, "push_dead_letter")
    publisher, subscriber = clients
    with CrmEndpoint({"broken": 503}) as crm:
        topic, dead_topic = _topic(publisher), _topic(publisher, "push-dead")
        dead_sub = subscriber.subscription_path(PROJECT, _name("dead"))
        subscriber.create_subscription(name=dead_sub, topic=dead_topic)
        sub = _push_sub(subscriber, topic, crm.url("broken"), retry_policy=_backoff(0.2, 0.8),
                        dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5})
        message_id = publisher.publish(topic, b"offer", lead_id="L9", team="broken-team").result(10)

        dead = []
        assert _wait(lambda: dead.extend(subscriber.pull(subscription=dead_sub, max_messages=5,
                                                         timeout=10).received_messages) or dead, timeout=30)
        attempts = crm.received("broken")
        assert [d.delivery_attempt for d in attempts] == [1, 2, 3, 4, 5]
        assert {d.message_id for d in attempts} == {message_id}
        (forwarded,) = dead
        assert forwarded.message.data == b"offer"
        assert forwarded.message.attributes["lead_id"] == "L9"
        assert forwarded.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
        assert forwarded.message.attributes["CloudPubSubDeadLetterSourceSubscription"] == sub.rsplit("/", 1)[1]
        time.sleep(1.0)
        assert len(crm.received("broken")) == 5  # nothing after the last attempt


def test_unwrapped_payload_with_metadata_headers(clients):
    publisher, subscriber = clients
    with CrmEndpoint({"raw": 200, "bare": 200}) as crm:
        topic = _topic(publisher)
        raw_sub = _push_sub(subscriber, topic, crm.url("raw"), push_config={"no_wrapper": {"write_metadata": True}})
        _push_sub(subscriber, topic, crm.url("bare"), push_config={"no_wrapper": {"write_metadata": False}})
        message_id = publisher.publish(topic, b'{"lead_id": "L2"}', team="us-east-sales").result(10)
        assert _wait(lambda: crm.received("raw") and crm.received("bare"))
        (raw,) = crm.received("raw")
        assert not raw.wrapped and raw.data == b'{"lead_id": "L2"}'
        lower = {k.lower(): v for k, v in raw.headers.items()}
        assert lower["x-goog-pubsub-message-id"] == message_id
        assert lower["x-goog-pubsub-subscription-name"] == raw_sub
        assert lower["x-goog-pubsub-publish-time"].endswith("Z")
        assert lower["team"] == "us-east-sales"  # attributes become headers of their own
        (bare,) = crm.received("bare")
        assert bare.data == b'{"lead_id": "L2"}'
        assert not any(k.lower().startswith("x-goog-pubsub-") for k in bare.headers)
        assert "team" not in {k.lower() for k in bare.headers}


def test_filters_on_delivery_attributes_pick_each_endpoints_offers(clients, request, each_pubsub_emulator):
    gcloud_gap(request, each_pubsub_emulator, "filter")
    publisher, subscriber = clients
    with CrmEndpoint({"nyc": 200, "hot": 200}) as crm:
        topic = _topic(publisher)
        _push_sub(subscriber, topic, crm.url("nyc"), filter='hasPrefix(attributes.team, "nyc-")')
        _push_sub(subscriber, topic, crm.url("hot"),
                  filter='attributes.priority = "hot" AND NOT attributes.territory = "us-west"')
        offers = [("nyc-sales", "us-nyc", "warm"), ("nyc-priority", "us-nyc", "hot"),
                  ("us-west-sales", "us-west", "hot"), ("us-east-sales", "us-east", "hot")]
        ids = [publisher.publish(topic, b"o", team=t, territory=r, priority=p).result(10) for t, r, p in offers]
        assert _wait(lambda: len(crm.received("nyc")) >= 2 and len(crm.received("hot")) >= 2)
        time.sleep(0.5)
        assert sorted(d.message_id for d in crm.received("nyc")) == sorted(ids[:2])
        assert sorted(d.message_id for d in crm.received("hot")) == sorted([ids[1], ids[3]])
        with pytest.raises(exceptions.InvalidArgument):
            _push_sub(subscriber, topic, crm.url("nyc"), filter='attributes.team = nyc')


def test_oidc_token_carries_the_audience_and_service_account(clients, request, each_pubsub_emulator):
    gcloud_gap(request, each_pubsub_emulator, "push_oidc")
    publisher, subscriber = clients
    with CrmEndpoint({"auth": 200}) as crm:
        topic = _topic(publisher)
        oidc = {"service_account_email": "crm-push@leadflow-e2e.iam.gserviceaccount.com", "audience": "crm-nyc"}
        _push_sub(subscriber, topic, crm.url("auth"), push_config={"oidc_token": oidc})
        publisher.publish(topic, b"x").result(10)
        assert _wait(lambda: crm.received("auth"))
        scheme, token = crm.received("auth")[0].headers["Authorization"].split(" ")
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert scheme == "Bearer"
        assert (claims["aud"], claims["email"]) == ("crm-nyc", oidc["service_account_email"])


def test_modify_push_config_turns_push_into_pull(clients):
    publisher, subscriber = clients
    with CrmEndpoint({"hook": 200}) as crm:
        topic = _topic(publisher)
        sub = _push_sub(subscriber, topic, crm.url("hook"))
        subscriber.modify_push_config(subscription=sub, push_config={})
        assert not subscriber.get_subscription(subscription=sub).push_config.push_endpoint
        publisher.publish(topic, b"pulled").result(10)
        got = subscriber.pull(subscription=sub, max_messages=5, timeout=10).received_messages
        assert [m.message.data for m in got] == [b"pulled"]
        assert crm.received("hook") == []
        with pytest.raises(exceptions.InvalidArgument):
            subscriber.modify_push_config(subscription=sub, push_config={"push_endpoint": "ftp://nowhere"})


def test_the_local_stack_turns_crm_endpoints_into_push_subscriptions(pubsub_emulator):
    """``ensure_pubsub_resources`` (what ``leadflow local up`` runs) with two configured CRM endpoints: each gets
    the deliveries its filter selects; the refusing one's go to the CRM dead-letter topic after its attempts."""
    from infra.local import stack
    from schemas.crm_endpoints import CrmEndpoint as EndpointConfig

    host, port = pubsub_emulator.rsplit(":", 1)
    with CrmEndpoint({"nyc": 200, "down": 500}) as crm:
        endpoints = (
            EndpointConfig(name="nyc", url="https://crm.example/nyc", local_url=crm.url("nyc"),
                           filter='hasPrefix(attributes.team, "nyc-")'),
            EndpointConfig(name="down", url="https://crm.example/down", local_url=crm.url("down"),
                           filter='attributes.priority = "hot"', min_backoff_seconds=0.05, max_backoff_seconds=0.2,
                           max_delivery_attempts=5),
        )
        cfg = stack.StackConfig(host=host, pubsub_port=int(port), project=_name("crm"), crm_endpoints=endpoints)
        report = stack.ensure_pubsub_resources(cfg)
        assert report[cfg.subscription("crm-push-nyc")] == report[cfg.subscription("crm-push-down")] == "created"
        assert stack.ensure_pubsub_resources(cfg)[cfg.subscription("crm-push-nyc")] == "exists"

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        offers = {"L1": ("nyc-sales", "warm"), "L2": ("nyc-priority", "hot"), "L3": ("us-east-sales", "hot"),
                  "L4": ("us-west-sales", "cold")}
        for lead_id, (team, priority) in offers.items():
            publisher.publish(cfg.topic("deliveries"), b"{}", lead_id=lead_id, team=team,
                              priority=priority).result(10)
        dead_sub = cfg.subscription("crm-delivery-dead-letters-ops")
        dead: list = []

        def all_dead() -> bool:
            response = subscriber.pull(subscription=dead_sub, max_messages=10, timeout=10)
            if response.received_messages:
                subscriber.acknowledge(subscription=dead_sub, ack_ids=[m.ack_id for m in response.received_messages])
            dead.extend(response.received_messages)
            return len(dead) >= 2

        assert _wait(all_dead, timeout=30)
        assert sorted(d.attributes["lead_id"] for d in crm.received("nyc")) == ["L1", "L2"]
        assert sorted(m.message.attributes["lead_id"] for m in dead) == ["L2", "L3"]
        assert {m.message.attributes["CloudPubSubDeadLetterSourceSubscription"] for m in dead} == {"crm-push-down"}
        assert len(crm.received("down")) == 10  # 5 attempts each
        nyc = crm.received("nyc")[0]
        token = nyc.headers["Authorization"].removeprefix("Bearer ")
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["email"] == f"leadflow-crm-push@{cfg.project}.iam.gserviceaccount.com"
        publisher.stop()
        subscriber.close()


def test_the_demo_crm_prints_one_teams_offers_and_dead_letters_the_failing_ones(pubsub_emulator):
    from infra.local import stack
    from infra.local.crm_endpoint import DEMO_ATTEMPTS, demo_crm_push

    host, port = pubsub_emulator.rsplit(":", 1)
    cfg = stack.StackConfig(host=host, pubsub_port=int(port), project=_name("demo"))
    stack.ensure_pubsub_resources(cfg)
    lines: list[str] = []
    publisher = pubsub_v1.PublisherClient()
    with demo_crm_push(cfg, team="us-east-sales", out=lines.append) as crm:
        for lead_id, team, priority in [("L1", "us-east-sales", "hot"), ("L2", "us-east-sales", "warm"),
                                        ("L3", "us-west-sales", "hot"), ("L4", "nyc-sales", "cold")]:
            publisher.publish(cfg.topic("deliveries"), b'{"name": "Jane Doe"}', lead_id=lead_id, team=team,
                              priority=priority).result(10)
        assert _wait(lambda: len(crm.received("demo-us-east-sales")) == 2)
    publisher.stop()
    printed = [line for line in lines if "CRM [demo-us-east-sales]" in line]
    assert sorted(line.split("lead_id=")[1].split()[0] for line in printed) == ["L1", "L2"]
    assert not any("Jane" in line for line in lines)  # ids and routing attributes only
    assert len(crm.received("demo-failing")) == 2 * DEMO_ATTEMPTS  # L1 and L3, hot
    assert lines[-1].endswith(f"2 dead-lettered to {cfg.topic('crm_dead_letters')}"), lines[-1]
    assert "team us-east-sales received 2 offers" in lines[-1]
