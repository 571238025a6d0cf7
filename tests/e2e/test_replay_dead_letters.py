"""``leadflow replay-dead-letters`` against the project's real Pub/Sub emulator (its own process, see conftest.py).

Dead letters are made by the pipeline's own code (``transforms.messages.dead_letter``, the BigQuery sink's
``sink_dead_letter``, ``pipelines.io.dead_letter_message``) and published to the local stack's topology
(``infra.local.stack.ensure_pubsub_resources``, in a project of its own per test). The command's ``main`` runs
with the official client; the test then reads what reached the input topic and what stayed on the dead-letter
subscription.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from google.cloud import pubsub_v1

from infra.local import stack as local_stack
from pipelines.io import dead_letter_message
from pipelines.ops import replay
from transforms.bigquery_sink import sink_dead_letter
from transforms.messages import DEAD_LETTER_PAYLOAD_LIMIT, dead_letter

pytestmark = pytest.mark.e2e

PII = ("Ana Lima", "ana.lima@example.com", "+14155550123")
LEAD = json.dumps({"full_name": PII[0], "email": PII[1], "phone": PII[2]}).encode()


@pytest.fixture
def stack(pubsub_emulator):
    host, port = pubsub_emulator.rsplit(":", 1)
    cfg = local_stack.StackConfig(host=host, pubsub_port=int(port), project=f"replay-{uuid.uuid4().hex[:10]}")
    local_stack.ensure_pubsub_resources(cfg)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    verify = cfg.subscription("leads-in-verify")  # sees only what is published to the input topic from now on
    subscriber.create_subscription(request={"name": verify, "topic": cfg.topic("input")})
    yield cfg, publisher, subscriber, verify
    publisher.stop()
    subscriber.close()


def _publish_dead_letter(publisher, cfg, dead) -> str:
    msg = dead_letter_message(dead)  # exactly what the pipeline publishes
    return publisher.publish(cfg.topic("dead_letters"), msg.data, **msg.attributes).result(timeout=10)


def _dl(message_id, data, attributes, stage, error_type, provider="api"):
    return dead_letter(message_id=message_id, data=data, attributes=attributes, publish_time=None,
                       provider=provider, stage=stage, error_type=error_type, error_message="rejected")


def _drain(subscriber, subscription, expected=None, settle=1.0, ack=True, timeout=15.0):
    """Messages on ``subscription``: until ``expected`` arrived (plus one more pull to catch extras), or else until
    nothing arrived for ``settle`` seconds. ``ack=False`` keeps them leased (the caller nacks them)."""
    got, give_up = [], time.monotonic() + timeout
    quiet_until = time.monotonic() + settle
    extra_pull_done = False
    while time.monotonic() < give_up:
        resp = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=10)
        batch = list(resp.received_messages)
        if batch:
            got.extend(batch)
            ids = [r.ack_id for r in batch]
            if ack:
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ids})
            else:
                subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": ids,
                                                        "ack_deadline_seconds": 60})
            quiet_until = time.monotonic() + settle
        if expected is not None and len(got) >= expected:
            if extra_pull_done:
                break
            extra_pull_done = True
        elif expected is None and time.monotonic() >= quiet_until:
            break
    return got


def _run(cfg, *args):
    lines: list[str] = []
    code = replay.main(["--project", cfg.project, "--json", *args],
                       env={"PUBSUB_EMULATOR_HOST": cfg.pubsub_host}, out=lines.append)
    return code, lines, json.loads(next(line for line in lines if line.startswith("{")))


def test_replays_selected_dead_letters_and_leaves_the_rest(stack):
    cfg, publisher, subscriber, verify = stack
    ops = cfg.subscription("lead-dead-letters-ops")
    non_utf8 = b"\xff\xfe lead form \x00\x01"
    ids = {
        "json": _publish_dead_letter(publisher, cfg, _dl("m-json", LEAD, {"provider": "api", "source": "web"},
                                                         "parse", "invalid_json")),
        "base64": _publish_dead_letter(publisher, cfg, _dl("m-bin", non_utf8, {"provider": "meta_lead_ads"},
                                                           "decode", "invalid_utf8")),
        "truncated": _publish_dead_letter(publisher, cfg, _dl(
            "m-big", b"x" * (DEAD_LETTER_PAYLOAD_LIMIT + 10), {"provider": "api"}, "decode", "payload_too_large")),
        "filtered": _publish_dead_letter(publisher, cfg, _dl("m-nocontact", LEAD, {"provider": "api"},
                                                             "normalize", "missing_contact")),
        "sink": _publish_dead_letter(publisher, cfg, sink_dead_letter(
            "leads", "row-1", {"lead_id": "l-1", "email": PII[1]}, "bigquery_insert_error", "invalid")),
        "looping": _publish_dead_letter(publisher, cfg, _dl("m-loop", LEAD, {"provider": "api", "replay_count": "3"},
                                                            "parse", "invalid_json")),
        "csv1": _publish_dead_letter(publisher, cfg, _dl("m-csv#1", b"name,phone\nA,1\nB,2\n",
                                                         {"provider": "csv_upload"}, "normalize", "invalid_json")),
        "csv2": _publish_dead_letter(publisher, cfg, _dl("m-csv#2", b"name,phone\nA,1\nB,2\n",
                                                         {"provider": "csv_upload"}, "normalize", "invalid_json")),
    }

    # Dry run: prints, publishes nothing, acks nothing.
    code, lines, summary = _run(cfg, "--dry-run")
    assert code == 0
    assert summary["would_replay"] == 4 and summary["duplicates_acked"] == 1
    assert summary["skipped"] == {"not_an_input": 1, "replay_limit": 1, "truncated": 1}
    assert summary["left_unacked"] == len(ids)
    assert _drain(subscriber, verify, settle=1.0) == []
    still_there = _drain(subscriber, ops, expected=len(ids), ack=False)
    assert sorted(r.message.message_id for r in still_there) == sorted(ids.values())
    subscriber.modify_ack_deadline(request={"subscription": ops, "ack_ids": [r.ack_id for r in still_there],
                                            "ack_deadline_seconds": 0})

    code, lines, summary = _run(cfg, "--error_type", "invalid_json", "--error_type", "invalid_utf8",
                                "--error_type", "payload_too_large", "--error_type", "bigquery_insert_error")
    assert code == 0
    assert summary == {"pulled": 8, "replayed": 3, "duplicates_acked": 1, "filtered_out": 1, "deferred_by_limit": 0,
                       "publish_failed": 0, "skipped": {"not_an_input": 1, "replay_limit": 1, "truncated": 1},
                       "left_unacked": 4, "erased_acked": 0, "dry_run": False}

    replayed = _drain(subscriber, verify, expected=3)
    by_origin = {r.message.attributes["replayed_from_message_id"]: r.message for r in replayed}
    assert sorted(by_origin) == ["m-bin", "m-csv", "m-json"] and len(replayed) == 3
    assert by_origin["m-json"].data == LEAD
    assert dict(by_origin["m-json"].attributes) == {"provider": "api", "source": "web",
                                                    "replayed_from_message_id": "m-json", "replay_count": "1"}
    assert by_origin["m-bin"].data == non_utf8
    assert by_origin["m-bin"].attributes["provider"] == "meta_lead_ads"
    assert by_origin["m-csv"].data == b"name,phone\nA,1\nB,2\n"

    left = _drain(subscriber, ops, expected=4)
    assert sorted(r.message.message_id for r in left) == sorted(
        ids[k] for k in ("truncated", "filtered", "sink", "looping"))

    text = "\n".join(lines)
    assert "reason=truncated" in text and "reason=replay_limit" in text and "reason=not_an_input" in text
    assert not [p for p in PII if p in text], "the command printed personal data"


def test_replays_messages_pubsub_forwarded_and_honours_the_limit(stack):
    cfg, publisher, subscriber, verify = stack
    ops = cfg.subscription("lead-dead-letters-ops")
    # A subscription of the input topic with a dead-letter policy, as infra/deploy/terraform configures the pipeline's.
    flaky = cfg.subscription("leads-in-flaky")
    subscriber.create_subscription(request={
        "name": flaky, "topic": cfg.topic("input"),
        "dead_letter_policy": {"dead_letter_topic": cfg.topic("dead_letters"), "max_delivery_attempts": 5}})
    original_id = publisher.publish(cfg.topic("input"), b"poison lead", provider="twilio").result(timeout=10)
    _drain(subscriber, verify, expected=1)  # the original itself reached the verify subscription: not a replay
    for _ in range(5):
        (r,) = subscriber.pull(request={"subscription": flaky, "max_messages": 10}, timeout=10).received_messages
        subscriber.modify_ack_deadline(request={"subscription": flaky, "ack_ids": [r.ack_id],
                                                "ack_deadline_seconds": 0})
    forwarded = _drain(subscriber, ops, expected=1, ack=False)
    assert [r.message.attributes["CloudPubSubDeadLetterSourceSubscription"] for r in forwarded] == ["leads-in-flaky"]
    subscriber.modify_ack_deadline(request={"subscription": ops, "ack_ids": [forwarded[0].ack_id],
                                            "ack_deadline_seconds": 0})
    for i in range(2):
        _publish_dead_letter(publisher, cfg, _dl(f"m-{i}", LEAD, {"provider": "api"}, "parse", "invalid_json"))

    code, _, summary = _run(cfg, "--stage", "pubsub")
    assert code == 0
    assert (summary["replayed"], summary["filtered_out"], summary["left_unacked"]) == (1, 2, 2)
    (back,) = _drain(subscriber, verify, expected=1)
    assert back.message.data == b"poison lead"  # as it was, to the topic of the subscription it came from
    assert dict(back.message.attributes) == {"provider": "twilio", "replay_count": "1",
                                             "replayed_from_message_id": forwarded[0].message.message_id}
    assert forwarded[0].message.message_id != original_id  # Pub/Sub's copy has an id of its own

    code, _, summary = _run(cfg, "--limit", "1")
    assert code == 0
    assert (summary["replayed"], summary["deferred_by_limit"], summary["left_unacked"]) == (1, 1, 1)
    (back,) = _drain(subscriber, verify, expected=1)
    assert back.message.attributes["replayed_from_message_id"] in {"m-0", "m-1"}
    assert len(_drain(subscriber, ops, expected=1)) == 1  # the one beyond --limit is still there


def test_needs_names_outside_the_local_stack(capsys):
    assert replay.main(["--dry-run"], env={}) == 2
    assert "--subscription and --topic" in capsys.readouterr().err


def test_dead_letters_of_an_erased_person_are_acked_never_replayed(stack, tmp_path):
    import hashlib

    from transforms.identity import ERASURES_KEY, PAYLOAD, hash_key, tombstone_key
    from transforms.identity_store import open_store

    cfg, publisher, subscriber, verify = stack
    spec = f"sqlite:{tmp_path / 'identity.sqlite'}"
    store = open_store(spec)  # what `leadflow forget` leaves for a person whose dead letter held LEAD
    store.put({ERASURES_KEY: {"n": 1, "at": 0},
               tombstone_key(PAYLOAD, hashlib.sha256(LEAD).hexdigest(), hash_key()): {"at": 0, "kind": PAYLOAD}})
    store.close()
    _publish_dead_letter(publisher, cfg, _dl("m-erased", LEAD, {"provider": "api"}, "parse", "invalid_json"))
    _publish_dead_letter(publisher, cfg, _dl("m-other", b'{"x": 1}', {"provider": "api"}, "parse", "invalid_json"))

    code, lines, summary = _run(cfg, "--identity_store", spec)
    assert code == 0
    assert (summary["erased_acked"], summary["replayed"], summary["left_unacked"]) == (1, 1, 0)
    replayed = _drain(subscriber, verify, expected=1)
    assert [r.message.attributes["replayed_from_message_id"] for r in replayed] == ["m-other"]
    assert _drain(subscriber, cfg.subscription("lead-dead-letters-ops"), settle=1.0) == []  # gone from the topic
    assert not [p for p in PII if p in "\n".join(lines)]
