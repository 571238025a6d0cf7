"""pipelines.ops.replay.interpret: what a message on the dead-letter topic is, without Pub/Sub (the e2e test runs the
command against the emulator)."""

from __future__ import annotations

import json

from pipelines.ops.replay import Replay, Skip, interpret, replay_attributes
from schemas.derive import to_row
from transforms.messages import dead_letter


def _message(data: bytes, attributes=None, stage="parse", error_type="invalid_json", **changes):
    dead = dead_letter(message_id="m-1", data=data, attributes=attributes or {"provider": "api"}, publish_time=None,
                       provider="api", stage=stage, error_type=error_type, error_message="rejected")
    row = {**to_row(dead), **changes}
    return json.dumps(row).encode(), {"stage": stage, "error_type": error_type, "message_id": "m-1"}


def test_a_pipeline_dead_letter_goes_back_to_the_input_topic_with_its_attributes():
    item = interpret(*_message(b'{"email": "x"}', {"provider": "api", "replay_count": "1"}))
    assert item == Replay("m-1", "parse", "invalid_json", b'{"email": "x"}', {"provider": "api", "replay_count": "1"},
                          "input")
    assert replay_attributes(item) == {"provider": "api", "replay_count": "2", "replayed_from_message_id": "m-1"}


def test_agent_event_dead_letters_go_back_to_the_agent_events_topic():
    assert interpret(*_message(b"{}", stage="agent_event", error_type="unknown_agent")).target == "agent_events"


def test_binary_payloads_round_trip_through_base64():
    data = bytes(range(256))
    item = interpret(*_message(data, stage="decode", error_type="invalid_utf8"))
    assert isinstance(item, Replay) and item.data == data


def test_reasons_not_to_replay():
    assert interpret(*_message(b"x", payload_truncated=True)).reason == "truncated"
    assert interpret(*_message(b"x", stage="sink")).reason == "not_an_input"
    assert interpret(*_message(b"x", {"replay_count": "3"})).reason == "replay_limit"
    assert interpret(*_message(b"x", {"replay_count": "1"}), max_replays=1).reason == "replay_limit"
    assert interpret(*_message(b"abc", payload="abd")).reason == "checksum_mismatch"
    assert interpret(*_message(b"\xff", payload="***", payload_encoding="base64")).reason == "bad_payload"
    assert interpret(*_message(b"x", payload_encoding="latin-1")).reason == "bad_payload"
    assert interpret(*_message(b"x", payload=None)).reason == "bad_payload"
    unreadable = interpret(b"not json", {"stage": "parse", "error_type": "invalid_json"}, message_id="dl-9")
    assert unreadable == Skip("dl-9", "parse", "invalid_json", "unreadable")
    assert interpret(json.dumps({"message_id": "m"}).encode(), {}).reason == "unreadable"
    assert interpret(*_message(b"x", attributes="[1, 2]")).reason == "unreadable"


def test_a_message_pubsub_forwarded_goes_back_to_its_subscriptions_topic_as_it_was():
    attributes = {"provider": "twilio", "CloudPubSubDeadLetterSourceSubscription": "leads-in-pipeline",
                  "CloudPubSubDeadLetterSourceSubscriptionProject": "p",
                  "CloudPubSubDeadLetterSourceDeliveryCount": "10"}
    item = interpret(b"raw \xff bytes", attributes, message_id="dl-1")
    assert item == Replay("dl-1", "pubsub", "max_delivery_attempts", b"raw \xff bytes", {"provider": "twilio"},
                          "subscription:projects/p/subscriptions/leads-in-pipeline")
    looping = interpret(b"raw", {**attributes, "replay_count": "3"}, message_id="dl-2")
    assert looping.reason == "replay_limit"


def test_csv_row_dead_letters_name_the_message_they_came_from():
    item = interpret(*_message(b"name,phone\nA,1\n"))
    item = Replay("m-7#3", item.stage, item.error_type, item.data, item.attributes, item.target)
    assert replay_attributes(item)["replayed_from_message_id"] == "m-7"
