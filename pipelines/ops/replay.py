"""``leadflow replay-dead-letters``: put dead-lettered inputs back on their input topic once the cause is fixed.

    leadflow replay-dead-letters --dry-run                      # what would be replayed (nothing is acked)
    leadflow replay-dead-letters --error_type invalid_json      # replay one kind of failure
    leadflow replay-dead-letters --subscription projects/P/subscriptions/lead-dead-letters-ops \\
        --topic projects/P/topics/leads-in --agent_events_topic projects/P/topics/agent-events --limit 500

It pulls from the dead-letter subscription (default: the local stack's ``lead-dead-letters-ops`` when
``PUBSUB_EMULATOR_HOST`` is set), and for each message:

* a dead letter of the pipeline (``schemas.records.DeadLetter`` as JSON, what ``dead_letter_message`` publishes):
  the original payload is decoded (``payload_encoding`` ``utf-8`` or ``base64``; checked against
  ``payload_sha256``) and republished with the original attributes, to ``--topic`` (the lead input), or to
  ``--agent_events_topic`` for stage ``agent_event``;
* a message Pub/Sub itself forwarded after too many failed deliveries (``CloudPubSubDeadLetterSource*``
  attributes, from the dead-letter policies in infra/deploy/terraform): republished as it is, without those attributes,
  to the topic of the subscription it came from (stage ``pubsub``, error type ``max_delivery_attempts``).

Each replayed message carries ``replayed_from_message_id`` (the original message id) and ``replay_count`` (one more
than the original's). A message already replayed ``--max_replays`` times is not replayed again (loop protection: a
message that keeps failing would otherwise circle forever).

Acknowledgement: a dead letter is acked only after the publish of its replay succeeded. Everything else stays on
the subscription and is reported: messages left out by ``--stage`` / ``--error_type`` / ``--limit``, and the ones
that cannot be replayed, with the reason (``truncated``: only the first bytes of an oversize payload were kept;
``not_an_input``: a BigQuery row the sink rejected or a bounded-mode input line, not a message; ``replay_limit``;
``unreadable``; ``bad_payload``; ``checksum_mismatch``; ``no_target_topic``; ``reserved_attribute``;
``meta_refetch``: a Meta notification the gateway kept, whose lead ``leadflow meta-refetch`` reads again). They are
nacked at the end, so they are available again at once. ``--dry-run`` acks nothing and publishes nothing.

Erased persons: with ``--identity_store`` (the job's), a dead letter of a person erased with ``leadflow forget`` (its
unit id erased in the journal, or its payload's fingerprint tombstoned) is acked and never replayed: the topic's copy
of their data goes, and a replay cannot make a new dead letter holding it (counted as ``erased_acked``).

Output names messages by id, stage and error type only: never payloads or attribute values (they hold PII).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.resources import LOCAL_PROJECT, Resources
from transforms.messages import GATEWAY_STAGE, META_FETCH_FAILED

REPLAYED_FROM = "replayed_from_message_id"
REPLAY_COUNT = "replay_count"
PUBSUB_DLQ_PREFIX = "CloudPubSubDeadLetterSource"
DEFAULT_MAX_REPLAYS = 3
NOT_INPUT_STAGES = frozenset({"sink", "read"})  # payload is a BigQuery row / an input-file line, not a message
AGENT_EVENT_STAGE = "agent_event"
# Keyword arguments of PublisherClient.publish: an attribute of one of these names cannot be passed through it.
RESERVED_ATTRIBUTES = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})
_DEAD_LETTER_FIELDS = ("message_id", "stage", "error_type", "payload", "payload_encoding", "payload_truncated",
                       "attributes")


@dataclass(frozen=True)
class Replay:
    """A dead letter that can go back: the original bytes and attributes, and where to."""

    original_id: str
    stage: str
    error_type: str
    data: bytes
    attributes: dict[str, str]
    target: str  # "input", "agent_events", or a full topic path (forwarded by Pub/Sub)


@dataclass(frozen=True)
class Skip:
    original_id: str
    stage: str
    error_type: str
    reason: str


@dataclass
class Summary:
    pulled: int = 0
    replayed: int = 0
    duplicates_acked: int = 0
    filtered_out: int = 0
    deferred: int = 0  # pulled after --limit was reached
    publish_failed: int = 0
    skipped: Counter = field(default_factory=Counter)
    dry_run: bool = False
    erased: int = 0  # dead letters of erased persons: acked, never replayed

    @property
    def left_unacked(self) -> int:
        return self.filtered_out + self.deferred + self.publish_failed + sum(self.skipped.values()) + (
            self.replayed + self.duplicates_acked + self.erased if self.dry_run else 0)

    def as_dict(self) -> dict[str, Any]:
        return {"pulled": self.pulled, ("would_replay" if self.dry_run else "replayed"): self.replayed,
                "duplicates_acked": self.duplicates_acked, "filtered_out": self.filtered_out,
                "deferred_by_limit": self.deferred, "publish_failed": self.publish_failed,
                "skipped": dict(sorted(self.skipped.items())), "left_unacked": self.left_unacked,
                "erased_acked": self.erased, "dry_run": self.dry_run}


def replay_count(attributes: Mapping[str, str]) -> int:
    try:
        return max(0, int(attributes.get(REPLAY_COUNT, "0")))
    except ValueError:
        return 0


def interpret(data: bytes, attributes: Mapping[str, str], max_replays: int = DEFAULT_MAX_REPLAYS,
              message_id: str = "") -> Replay | Skip:
    """What one message of the dead-letter topic is, and whether it can be replayed. Pure: no Pub/Sub calls."""
    if any(k.startswith(PUBSUB_DLQ_PREFIX) for k in attributes):
        original = {k: v for k, v in attributes.items() if not k.startswith(PUBSUB_DLQ_PREFIX)}
        source = attributes.get(f"{PUBSUB_DLQ_PREFIX}Subscription", "")
        project = attributes.get(f"{PUBSUB_DLQ_PREFIX}SubscriptionProject", "")
        if replay_count(original) >= max_replays:
            return Skip(message_id, "pubsub", "max_delivery_attempts", "replay_limit")
        if not source or not project:
            return Skip(message_id, "pubsub", "max_delivery_attempts", "no_target_topic")
        return Replay(message_id, "pubsub", "max_delivery_attempts", bytes(data), original,
                      f"subscription:projects/{project}/subscriptions/{source}")
    try:
        dead = json.loads(data)
        if not isinstance(dead, dict) or any(k not in dead for k in _DEAD_LETTER_FIELDS):
            raise ValueError("not a dead letter record")
        stage, error_type = str(dead["stage"]), str(dead["error_type"])
        original_id = str(dead["message_id"])
        original_attributes = json.loads(dead["attributes"]) if dead["attributes"] else {}
        if not isinstance(original_attributes, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in original_attributes.items()):
            raise ValueError("attributes are not an object of strings")
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        return Skip(message_id, attributes.get("stage", "?"), attributes.get("error_type", "?"), "unreadable")

    def skip(reason: str) -> Skip:
        return Skip(original_id, stage, error_type, reason)

    if stage in NOT_INPUT_STAGES:
        return skip("not_an_input")
    if (stage, error_type) == (GATEWAY_STAGE, META_FETCH_FAILED):
        return skip("meta_refetch")  # the payload is the webhook's notification: `leadflow meta-refetch` reads the lead
    if dead["payload_truncated"]:
        return skip("truncated")
    if replay_count(original_attributes) >= max_replays:
        return skip("replay_limit")
    payload, encoding = dead["payload"], dead["payload_encoding"]
    if not isinstance(payload, str):
        return skip("bad_payload")
    if encoding == "utf-8":
        raw = payload.encode("utf-8", "surrogatepass")
    elif encoding == "base64":
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return skip("bad_payload")
    else:
        return skip("bad_payload")
    expected = dead.get("payload_sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        return skip("checksum_mismatch")
    target = "agent_events" if stage == AGENT_EVENT_STAGE else "input"
    return Replay(original_id, stage, error_type, raw, dict(original_attributes), target)


def replay_attributes(item: Replay) -> dict[str, str]:
    """The original attributes plus the replay lineage (base id without a CSV row suffix, count + 1)."""
    out = dict(item.attributes)
    out[REPLAYED_FROM] = item.original_id.split("#", 1)[0]
    out[REPLAY_COUNT] = str(replay_count(item.attributes) + 1)
    return out


@dataclass
class ReplayConfig:
    subscription: str
    topic: str
    agent_events_topic: str | None = None
    stages: frozenset[str] = frozenset()
    error_types: frozenset[str] = frozenset()
    limit: int | None = None
    max_replays: int = DEFAULT_MAX_REPLAYS
    dry_run: bool = False
    batch_size: int = 100
    idle_pulls: int = 2
    pull_timeout_s: float = 10.0
    publish_timeout_s: float = 60.0
    erased: Callable[[str, bytes], bool] | None = None  # (unit id, payload) of an erased person (erased_in_store)


def erased_in_store(spec: str) -> Callable[[str, bytes], bool]:
    """Whether a dead letter (its unit id and payload) belongs to a person ``leadflow forget`` erased, by the
    tombstones in the identity store ``spec`` (same ``LEADFLOW_IDENTITY_HASH_KEY`` as the job)."""
    from transforms.identity import ERASURES_KEY, PAYLOAD, hash_key, tombstone_key
    from transforms.identity_store import open_store

    store, key = open_store(spec), hash_key()
    if not store.get([ERASURES_KEY]):
        return lambda unit_id, data: False
    return lambda unit_id, data: bool(store.get([f"u:{unit_id}", tombstone_key(
        PAYLOAD, hashlib.sha256(data).hexdigest(), key)]))


def _selected(item: Replay | Skip, cfg: ReplayConfig) -> bool:
    return (not cfg.stages or item.stage in cfg.stages) and (not cfg.error_types or item.error_type in cfg.error_types)


def _describe(dl_id: str, item: Replay | Skip) -> str:
    return f"dead_letter={dl_id} message_id={item.original_id or '-'} stage={item.stage} error_type={item.error_type}"


def run_replay(subscriber, publisher, cfg: ReplayConfig, out: Callable[[str], None] = print) -> Summary:
    """Pull, decide, publish, ack (see the module docstring). ``subscriber``/``publisher``: google-cloud-pubsub
    ``SubscriberClient`` / ``PublisherClient`` (the emulator through PUBSUB_EMULATOR_HOST)."""
    from google.api_core import exceptions as gexc

    summary = Summary(dry_run=cfg.dry_run)
    held: dict[str, str] = {}  # dead-letter message id -> latest ack id, for messages left on the subscription
    replayed_keys: set[tuple[str, str]] = set()  # (original id without row, payload sha256) replayed in this run
    topics_of_subscriptions: dict[str, str | None] = {}
    seen: set[str] = set()
    idle = 0

    def target_topic(item: Replay) -> str | None:
        if item.target == "input":
            return cfg.topic
        if item.target == "agent_events":
            return cfg.agent_events_topic
        sub = item.target.removeprefix("subscription:")
        if sub not in topics_of_subscriptions:
            try:
                topics_of_subscriptions[sub] = subscriber.get_subscription(
                    request={"subscription": sub}, timeout=cfg.pull_timeout_s).topic or None
            except gexc.GoogleAPICallError as e:
                out(f"warning: cannot look up subscription {sub}: {type(e).__name__}")
                topics_of_subscriptions[sub] = None
        return topics_of_subscriptions[sub]

    def limit_reached() -> bool:
        return cfg.limit is not None and summary.replayed >= cfg.limit

    while idle < cfg.idle_pulls and not limit_reached():
        try:
            response = subscriber.pull(request={"subscription": cfg.subscription, "max_messages": cfg.batch_size},
                                       timeout=cfg.pull_timeout_s)
            received = list(response.received_messages)
        except gexc.DeadlineExceeded:
            received = []
        fresh = [r for r in received if r.message.message_id not in seen]
        for r in received:
            if r.message.message_id in held:  # redelivered while we held it: keep the newest ack id
                held[r.message.message_id] = r.ack_id
        if not fresh:
            idle += 1
            continue
        idle = 0
        pending = []  # (received message, item, topic, future)
        erased_acks: list[str] = []
        for r in fresh:
            msg = r.message
            seen.add(msg.message_id)
            summary.pulled += 1
            if limit_reached():
                summary.deferred += 1
                held[msg.message_id] = r.ack_id
                continue
            item = interpret(bytes(msg.data), dict(msg.attributes), cfg.max_replays, msg.message_id)
            if not _selected(item, cfg):
                summary.filtered_out += 1
                held[msg.message_id] = r.ack_id
                continue
            if isinstance(item, Skip):
                summary.skipped[item.reason] += 1
                held[msg.message_id] = r.ack_id
                out(f"skipped      {_describe(msg.message_id, item)} reason={item.reason}")
                continue
            if cfg.erased is not None and cfg.erased(item.original_id, item.data):
                summary.erased += 1
                if cfg.dry_run:
                    held[msg.message_id] = r.ack_id
                else:
                    erased_acks.append(r.ack_id)
                out(f"{'would ack' if cfg.dry_run else 'acked':<12} {_describe(msg.message_id, item)} "
                    "(its person was erased on request: not replayed)")
                continue
            topic = target_topic(item)
            if not topic:
                summary.skipped["no_target_topic"] += 1
                held[msg.message_id] = r.ack_id
                out(f"skipped      {_describe(msg.message_id, item)} reason=no_target_topic")
                continue
            key = (item.original_id.split("#", 1)[0], hashlib.sha256(item.data).hexdigest())
            if key in replayed_keys:  # e.g. two rows of one CSV upload: the whole message went back once
                if cfg.dry_run:
                    summary.duplicates_acked += 1
                    held[msg.message_id] = r.ack_id
                    out(f"would ack    {_describe(msg.message_id, item)} (its message is replayed above)")
                else:
                    pending.append((r, item, topic, None))
                continue
            if RESERVED_ATTRIBUTES & set(item.attributes):
                summary.skipped["reserved_attribute"] += 1
                held[msg.message_id] = r.ack_id
                out(f"skipped      {_describe(msg.message_id, item)} reason=reserved_attribute")
                continue
            replayed_keys.add(key)
            summary.replayed += 1
            attributes = replay_attributes(item)
            if cfg.dry_run:
                held[msg.message_id] = r.ack_id
                out(f"would replay {_describe(msg.message_id, item)} -> {topic} (replay {attributes[REPLAY_COUNT]})")
                continue
            future = publisher.publish(topic, item.data, **attributes)
            pending.append((r, item, topic, future))
        acks, failed_keys = erased_acks, set()
        for r, item, topic, future in pending:
            if future is None:
                continue
            try:
                future.result(timeout=cfg.publish_timeout_s)
            except Exception as e:  # a replay that did not reach the topic: keep the dead letter
                summary.replayed -= 1
                summary.publish_failed += 1
                failed_keys.add((item.original_id.split("#", 1)[0], hashlib.sha256(item.data).hexdigest()))
                held[r.message.message_id] = r.ack_id
                out(f"FAILED       {_describe(r.message.message_id, item)} -> {topic}: {type(e).__name__}")
                continue
            acks.append(r.ack_id)
            out(f"replayed     {_describe(r.message.message_id, item)} -> {topic} "
                f"(replay {replay_count(item.attributes) + 1})")
        for r, item, _topic, future in pending:
            if future is not None:
                continue
            key = (item.original_id.split("#", 1)[0], hashlib.sha256(item.data).hexdigest())
            if key in failed_keys:
                summary.publish_failed += 1
                held[r.message.message_id] = r.ack_id
            else:
                summary.duplicates_acked += 1
                acks.append(r.ack_id)
                out(f"acked        {_describe(r.message.message_id, item)} (its message was replayed above)")
        if acks:
            subscriber.acknowledge(request={"subscription": cfg.subscription, "ack_ids": acks})
    if held:
        _nack(subscriber, cfg.subscription, list(held.values()), out)
    return summary


def _nack(subscriber, subscription: str, ack_ids: list[str], out) -> None:
    from google.api_core import exceptions as gexc

    for i in range(0, len(ack_ids), 1000):
        try:
            subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": ack_ids[i:i + 1000],
                                                    "ack_deadline_seconds": 0})
        except gexc.GoogleAPICallError as e:  # they come back when their deadline lapses anyway
            out(f"warning: could not release {len(ack_ids[i:i + 1000])} messages at once: {type(e).__name__}")


def format_summary(summary: Summary) -> str:
    d = summary.as_dict()
    verb = "would replay" if summary.dry_run else "replayed"
    lines = [f"pulled {d['pulled']}: {verb} {summary.replayed}, acked as duplicates {d['duplicates_acked']}, "
             f"{'would ack' if summary.dry_run else 'acked'} as erased {d['erased_acked']}, "
             f"filtered out {d['filtered_out']}, deferred by --limit {d['deferred_by_limit']}, "
             f"publish failed {d['publish_failed']}"]
    if summary.skipped:
        lines.append("skipped (left on the subscription): "
                     + ", ".join(f"{reason} {n}" for reason, n in sorted(summary.skipped.items())))
    dry = " (dry run)" if summary.dry_run else ""
    lines.append(f"left unacked on the subscription: {summary.left_unacked}{dry}")
    return "\n".join(lines)


def _full(name: str | None, kind: str, project: str | None) -> str | None:
    if not name or "/" in name:
        return name
    if not project:
        raise ValueError(f"--{kind[:-1]} {name!r} needs --project (or give projects/P/{kind}/{name})")
    return f"projects/{project}/{kind}/{name}"


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ReplayConfig:
    """Defaults: the local stack's names when PUBSUB_EMULATOR_HOST is set; otherwise --subscription and --topic."""
    project = args.project or env.get("PUBSUB_PROJECT_ID") or env.get("LEADFLOW_PROJECT")
    subscription, topic, agent_topic = args.subscription, args.topic, args.agent_events_topic
    if env.get("PUBSUB_EMULATOR_HOST"):
        stack = Resources(project or LOCAL_PROJECT)  # the local stack's names
        project = stack.project
        subscription = subscription or stack.subscription("lead-dead-letters-ops")
        topic = topic or stack.topic("input")
        agent_topic = agent_topic or stack.topic("agent_events")
    if not subscription or not topic:
        raise ValueError("give --subscription and --topic (defaults exist only against the local stack, "
                         "with PUBSUB_EMULATOR_HOST set)")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    if args.max_replays < 1:
        raise ValueError("--max_replays must be at least 1")
    return ReplayConfig(
        subscription=_full(subscription, "subscriptions", project), topic=_full(topic, "topics", project),
        agent_events_topic=_full(agent_topic, "topics", project), stages=frozenset(args.stage or ()),
        error_types=frozenset(args.error_type or ()), limit=args.limit, max_replays=args.max_replays,
        dry_run=args.dry_run, batch_size=args.batch_size)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="leadflow replay-dead-letters",
                                 description="Republish dead-lettered inputs to their input topic.")
    ap.add_argument("--subscription", help="dead-letter subscription (default with the emulator: "
                                           "lead-dead-letters-ops)")
    ap.add_argument("--topic", help="lead input topic (default with the emulator: leads-in)")
    ap.add_argument("--agent_events_topic", help="agent events topic, for stage agent_event (default with the "
                                                 "emulator: agent-events); without it such dead letters are skipped")
    ap.add_argument("--project", help="project for short names (default $PUBSUB_PROJECT_ID, $LEADFLOW_PROJECT)")
    ap.add_argument("--stage", action="append", help="replay only this stage (repeatable)")
    ap.add_argument("--error_type", action="append", help="replay only this error type (repeatable)")
    ap.add_argument("--limit", type=int, help="replay at most this many messages")
    ap.add_argument("--max_replays", type=int, default=DEFAULT_MAX_REPLAYS,
                    help=f"never replay a message already replayed this often (default {DEFAULT_MAX_REPLAYS})")
    ap.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                    help="pull and print what would be replayed; publish and ack nothing")
    ap.add_argument("--batch_size", type=int, default=100, help="messages per pull (default 100)")
    ap.add_argument("--identity_store", help="the job's identity store: dead letters of persons erased with "
                                             "leadflow forget are acked, never replayed")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    return ap


def main(argv: Iterable[str] | None = None, env: Mapping[str, str] | None = None,
         out: Callable[[str], None] = print) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = config_from_args(args, os.environ if env is None else env)
        if args.identity_store:
            from transforms.identity_store import check_spec

            check_spec(args.identity_store)
            cfg.erased = erased_in_store(args.identity_store)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from google.cloud import pubsub_v1

    subscriber, publisher = pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()
    started = time.monotonic()
    try:
        out(f"{'dry run: ' if cfg.dry_run else ''}replaying from {cfg.subscription} to {cfg.topic}"
            + (f" (stage {sorted(cfg.stages)})" if cfg.stages else "")
            + (f" (error_type {sorted(cfg.error_types)})" if cfg.error_types else ""))
        summary = run_replay(subscriber, publisher, cfg, out)
    finally:
        publisher.stop()
        subscriber.close()
    out(json.dumps(summary.as_dict(), sort_keys=True) if args.json else format_summary(summary))
    out(f"done in {time.monotonic() - started:.1f} s")
    return 1 if summary.publish_failed else 0


if __name__ == "__main__":
    sys.exit(main())
