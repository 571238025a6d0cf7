"""The project's Pub/Sub emulator's pure rules: subscription filters (the documented syntax), the retry policy's
exponential backoff and the push request it sends (envelope, unwrapped payload, OIDC claims)."""

from __future__ import annotations

import base64
import json

import pytest

from infra.local.pubsub_emulator.filters import FilterError, compile_filter
from infra.local.pubsub_emulator.push import check_push_endpoint, push_request
from infra.local.pubsub_emulator.server import PubsubMessage, PubSubState, Subscription, _Sub

OFFER = {"team": "nyc-sales", "territory": "us-nyc", "priority": "hot", "my.key": "dotted"}


@pytest.mark.parametrize(("text", "matches"), [
    ("", True),
    ('attributes.team = "nyc-sales"', True),
    ('attributes.team != "nyc-sales"', False),
    ('attributes.team = "NYC-SALES"', False),  # case-sensitive
    ("attributes:priority", True),
    ("attributes:agent", False),
    ("NOT attributes:agent", True),
    ("-attributes:agent", True),
    ('hasPrefix(attributes.territory, "us-")', True),
    ('hasPrefix(attributes.agent, "")', False),  # a missing attribute has no prefix
    ('attributes."my.key" = "dotted"', True),
    ('attributes.team = "nyc-sales" AND attributes.priority = "warm"', False),
    ('attributes.team = "x" OR attributes.priority = "hot"', True),
    ('(attributes.team = "x" OR attributes.priority = "hot") AND NOT attributes.territory = "us-west"', True),
    ('NOT (attributes:team AND attributes:priority)', False),
    ('attributes.team = "a\\"b"', False),
])
def test_filter_syntax(text, matches):
    assert compile_filter(text)(OFFER) is matches


@pytest.mark.parametrize(("text", "why"), [
    ('attributes.a = "1" AND attributes.b = "2" OR attributes:c', "mixed without parentheses"),
    ("attributes.team = nyc", "expected string"),
    ('team = "nyc"', "condition on attributes"),
    ('attributes.team = "x" AND', "unexpected end"),
    ('attributes.team = "x")', "unexpected"),
    ('attributes.team > "x"', "unexpected character"),
    ('attributes:team = "x"', "unexpected"),
    ('data = "x"', "condition on attributes"),
    ('attributes.team = "' + "x" * 250 + '"', "at most 256 bytes"),
])
def test_filters_the_service_refuses(text, why):
    with pytest.raises(FilterError, match=why):
        compile_filter(text)


def _sub(**fields) -> _Sub:
    return _Sub(Subscription(name="projects/p/subscriptions/sub", topic="projects/p/topics/top", **fields),
                PubSubState().lock)


def test_retry_policy_backoff_grows_exponentially_within_its_bounds():
    sub = _sub(retry_policy={"minimum_backoff": {"nanos": 200_000_000}, "maximum_backoff": {"seconds": 1}})
    assert [sub.backoff(n) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    default = _sub()
    default.pb.retry_policy.SetInParent()  # a retry policy without bounds: 10 s .. 600 s
    assert [default.backoff(n) for n in (1, 2, 7, 9)] == [10, 20, 600, 600]
    assert _sub().backoff(3) == 0  # no retry policy: redelivered at once


def _message(**attributes) -> PubsubMessage:
    msg = PubsubMessage(data=b'{"lead_id": "L1"}', message_id="42", attributes=attributes, ordering_key="L1")
    msg.publish_time.FromJsonString("2026-12-04T01:02:03.456Z")
    return msg


def test_wrapped_push_request_is_the_documented_envelope():
    config = Subscription(push_config={"push_endpoint": "http://crm.local/hook"}).push_config
    body, headers = push_request("projects/p/subscriptions/s", config, _message(team="t"), delivery_attempt=3)
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "message": {"data": base64.b64encode(b'{"lead_id": "L1"}').decode(), "attributes": {"team": "t"},
                    "messageId": "42", "message_id": "42", "publishTime": "2026-12-04T01:02:03.456Z",
                    "publish_time": "2026-12-04T01:02:03.456Z", "orderingKey": "L1"},
        "subscription": "projects/p/subscriptions/s",
        "deliveryAttempt": 3,
    }
    body, _ = push_request("projects/p/subscriptions/s", config, _message(), delivery_attempt=0)
    assert "deliveryAttempt" not in json.loads(body) and "attributes" not in json.loads(body)["message"]


def test_unwrapped_push_request_and_oidc_claims():
    config = Subscription(push_config={
        "push_endpoint": "http://crm.local/hook", "no_wrapper": {"write_metadata": True},
        "oidc_token": {"service_account_email": "push@p.iam.gserviceaccount.com"}}).push_config
    body, headers = push_request("projects/p/subscriptions/s", config, _message(team="t"), delivery_attempt=2)
    assert body == b'{"lead_id": "L1"}'
    token = headers.pop("Authorization").removeprefix("Bearer ")
    assert headers == {"x-goog-pubsub-subscription-name": "projects/p/subscriptions/s",
                       "x-goog-pubsub-message-id": "42", "x-goog-pubsub-publish-time": "2026-12-04T01:02:03.456Z",
                       "x-goog-pubsub-delivery-attempt": "2", "x-goog-pubsub-ordering-key": "L1", "team": "t"}
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == "http://crm.local/hook"  # no audience: the endpoint URL, as the service does
    assert claims["email"] == "push@p.iam.gserviceaccount.com"


@pytest.mark.parametrize("url", ["ftp://x/y", "crm.local/hook", "http:///nohost", ""])
def test_push_endpoints_must_be_absolute_http_urls(url):
    with pytest.raises(ValueError, match="push endpoint"):
        check_push_endpoint(url)
