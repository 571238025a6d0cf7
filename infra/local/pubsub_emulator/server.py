"""In-memory Pub/Sub state and the gRPC servicers for ``google.pubsub.v1.Publisher`` / ``Subscriber``.

The wire protocol is the real one: request/response messages are the protobuf classes behind the
proto-plus types of ``google.pubsub_v1`` and the method paths are those of the client transports
(``/google.pubsub.v1.Publisher/Publish`` ...), so the official client connects unchanged through
``PUBSUB_EMULATOR_HOST``. See the package docstring for what is and is not implemented.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1 import types as pubsub_types

from infra.local.pubsub_emulator.filters import FilterError, compile_filter
from infra.local.pubsub_emulator.push import Pusher, check_push_endpoint

log = logging.getLogger("infra.local.pubsub_emulator")

# --- protobuf message classes behind the proto-plus types -------------------------------------------------------
Topic = pubsub_types.Topic.pb()
Subscription = pubsub_types.Subscription.pb()
PubsubMessage = pubsub_types.PubsubMessage.pb()
ReceivedMessage = pubsub_types.ReceivedMessage.pb()
PublishRequest = pubsub_types.PublishRequest.pb()
PublishResponse = pubsub_types.PublishResponse.pb()
GetTopicRequest = pubsub_types.GetTopicRequest.pb()
UpdateTopicRequest = pubsub_types.UpdateTopicRequest.pb()
ListTopicsRequest = pubsub_types.ListTopicsRequest.pb()
ListTopicsResponse = pubsub_types.ListTopicsResponse.pb()
ListTopicSubscriptionsRequest = pubsub_types.ListTopicSubscriptionsRequest.pb()
ListTopicSubscriptionsResponse = pubsub_types.ListTopicSubscriptionsResponse.pb()
ListTopicSnapshotsRequest = pubsub_types.ListTopicSnapshotsRequest.pb()
ListTopicSnapshotsResponse = pubsub_types.ListTopicSnapshotsResponse.pb()
DeleteTopicRequest = pubsub_types.DeleteTopicRequest.pb()
GetSubscriptionRequest = pubsub_types.GetSubscriptionRequest.pb()
UpdateSubscriptionRequest = pubsub_types.UpdateSubscriptionRequest.pb()
ListSubscriptionsRequest = pubsub_types.ListSubscriptionsRequest.pb()
ListSubscriptionsResponse = pubsub_types.ListSubscriptionsResponse.pb()
DeleteSubscriptionRequest = pubsub_types.DeleteSubscriptionRequest.pb()
PullRequest = pubsub_types.PullRequest.pb()
PullResponse = pubsub_types.PullResponse.pb()
StreamingPullRequest = pubsub_types.StreamingPullRequest.pb()
StreamingPullResponse = pubsub_types.StreamingPullResponse.pb()
AcknowledgeRequest = pubsub_types.AcknowledgeRequest.pb()
ModifyAckDeadlineRequest = pubsub_types.ModifyAckDeadlineRequest.pb()
ModifyPushConfigRequest = pubsub_types.ModifyPushConfigRequest.pb()
Empty = empty_pb2.Empty

PUBLISHER_SERVICE = "google.pubsub.v1.Publisher"
SUBSCRIBER_SERVICE = "google.pubsub.v1.Subscriber"

DELETED_TOPIC = "_deleted-topic_"
DEFAULT_ACK_DEADLINE = 10
MAX_ACK_DEADLINE = 600
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
MIN_MAX_DELIVERY_ATTEMPTS = 5
MAX_MAX_DELIVERY_ATTEMPTS = 100
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PULL_WAIT = 0.5  # seconds a Pull without return_immediately waits for a first message
MAX_MESSAGES_PER_RESPONSE = 1000
MAX_BYTES_PER_RESPONSE = 4 * 1024 * 1024
MAX_GRPC_MESSAGE = 32 * 1024 * 1024
# The service's publish limits (docs "Pub/Sub quotas and limits"): per request, per message's attributes.
MAX_PUBLISH_MESSAGES = 1000
MAX_PUBLISH_BYTES = 10_000_000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024
_ACK_ID = re.compile(r"(\d+)-\d+")
MESSAGE_RETENTION_SECONDS = 7 * 24 * 3600
MAX_BACKOFF_SECONDS = 600  # the retry policy's bounds: 0..600 s, defaults 10 s and 600 s
DEFAULT_MIN_BACKOFF, DEFAULT_MAX_BACKOFF = 10.0, 600.0

# Real rule for topic/subscription ids: 3-255 chars, starts with a letter, [A-Za-z0-9-_.~+%], not "goog...".
_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.:~]*")


class ApiError(Exception):
    """An error to answer with a gRPC status (the servicers turn it into ``context.abort``)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def _check_project(name: str) -> str:
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "projects" or not _PROJECT_RE.fullmatch(parts[1]):
        raise _invalid(f"Invalid project name: {name!r} (expected projects/{{project}})")
    return parts[1]


def _check_resource(name: str, collection: str, kind: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != collection or not _PROJECT_RE.fullmatch(parts[1]):
        raise _invalid(f"Invalid {kind} name: {name!r} (expected projects/{{project}}/{collection}/{{{kind}}})")
    rid = parts[3]
    if not _ID_RE.fullmatch(rid) or rid.lower().startswith("goog"):
        raise _invalid(
            f"Invalid {kind} id {rid!r}: must be 3-255 characters, start with a letter, contain only "
            "letters, digits and -_.~+% and not start with 'goog'"
        )
    return parts[1], rid


def check_topic_name(name: str) -> tuple[str, str]:
    return _check_resource(name, "topics", "topic")


def check_subscription_name(name: str) -> tuple[str, str]:
    return _check_resource(name, "subscriptions", "subscription")


def _page(names: list[str], page_size: int, page_token: str) -> tuple[list[str], str]:
    """Page through sorted ``names``; the token is the last name of the previous page."""
    if page_size < 0:
        raise _invalid("page_size must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if page_token:
        start = next((i for i, n in enumerate(names) if n > page_token), len(names))
    chunk = names[start : start + size]
    token = chunk[-1] if start + size < len(names) and chunk else ""
    return chunk, token


# --- per-subscription state -----------------------------------------------------------------------------------

READY, WAITING, OUTSTANDING, DONE, DELAYED = range(5)
BUSY = (OUTSTANDING, DELAYED)  # a keyed message in one of these holds back the later messages of its key


@dataclass(eq=False)
class _Entry:
    seq: int
    msg: Any  # PubsubMessage (shared between subscriptions, never mutated)
    key: str  # ordering key when the subscription orders messages, else ""
    size: int
    attempts: int = 0
    state: int = READY
    ack_id: str | None = None
    deadline: float = 0.0


@dataclass(eq=False)
class _Stream:
    """One StreamingPull stream: flow control and its ack deadline."""

    ack_deadline: int
    max_messages: int
    max_bytes: int
    delivered: dict[str, int] = field(default_factory=dict)  # ack_id -> size, while outstanding
    closed: bool = False
    error: ApiError | None = None


class _Sub:
    def __init__(self, pb: Any, lock: threading.RLock):
        self.pb = pb
        self.cond = threading.Condition(lock)
        self.ready: list[tuple[int, _Entry]] = []  # heap by publish sequence
        self.key_queues: dict[str, collections.deque[_Entry]] = {}
        self.key_busy: collections.Counter[str] = collections.Counter()  # key -> its messages in BUSY states
        self.outstanding: dict[str, _Entry] = {}
        self.expiry: list[tuple[float, str]] = []  # heap (deadline, ack_id), lazily invalidated
        self.delayed: list[tuple[float, int, _Entry]] = []  # heap (due, seq, entry): nacked, backing off
        self.accepts = compile_filter(pb.filter)  # the filter is immutable: compiled once
        self.backlog = 0  # messages not yet acked (or dead-lettered)
        self.deleted = False

    @property
    def ordered(self) -> bool:
        return self.pb.enable_message_ordering

    def backoff(self, attempts: int) -> float:
        """Seconds before a message that failed ``attempts`` deliveries comes back: 0 without a retry policy,
        else exponential from minimum_backoff, at most maximum_backoff."""
        if not self.pb.HasField("retry_policy"):
            return 0.0
        policy = self.pb.retry_policy
        low = policy.minimum_backoff.ToNanoseconds() / 1e9 if policy.HasField("minimum_backoff") \
            else DEFAULT_MIN_BACKOFF
        high = policy.maximum_backoff.ToNanoseconds() / 1e9 if policy.HasField("maximum_backoff") \
            else DEFAULT_MAX_BACKOFF
        return min(high, low * 2 ** max(0, attempts - 1))

    @property
    def dead_letter(self) -> tuple[str, int] | None:
        policy = self.pb.dead_letter_policy
        if policy.dead_letter_topic:
            return policy.dead_letter_topic, policy.max_delivery_attempts
        return None


class PubSubState:
    """All topics, subscriptions and messages, guarded by one lock (with a condition per subscription)."""

    def __init__(self, min_ack_deadline: int = DEFAULT_ACK_DEADLINE):
        if not 1 <= min_ack_deadline <= MAX_ACK_DEADLINE:
            raise ValueError("min_ack_deadline must be within 1..600")
        self.min_ack_deadline = min_ack_deadline
        self.lock = threading.RLock()
        self.topics: dict[str, Any] = {}
        self.subs: dict[str, _Sub] = {}
        self.topic_subs: dict[str, set[str]] = collections.defaultdict(set)
        self._message_ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._acks_issued = 0  # ack ids are "N-SEQ" with N <= this; any other id was never handed out
        self._warned: set[str] = set()
        self.push_wakeup = threading.Event()  # set when a push subscription may have something to deliver

    # -- helpers ------------------------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _sub(self, name: str) -> _Sub:
        check_subscription_name(name)
        sub = self.subs.get(name)
        if sub is None:
            raise _not_found(f"Subscription does not exist (resource={name})")
        return sub

    def _check_ack_ids(self, ack_ids: Any) -> None:
        """INVALID_ARGUMENT for an id this emulator never handed out (a stale one, already acked or lapsed, is
        accepted and ignored, as by the service)."""
        for ack_id in ack_ids:
            m = _ACK_ID.fullmatch(ack_id)
            if m is None or not 0 < int(m.group(1)) <= self._acks_issued:
                raise _invalid(f"Invalid ack id (ack_id={ack_id})")

    def _clamp_deadline(self, seconds: int) -> int:
        if seconds <= 0:
            seconds = DEFAULT_ACK_DEADLINE
        return max(self.min_ack_deadline, min(MAX_ACK_DEADLINE, seconds))

    # -- topics -------------------------------------------------------------------------------------------------
    def create_topic(self, request: Any) -> Any:
        check_topic_name(request.name)
        topic = Topic()
        topic.CopyFrom(request)
        topic.state = Topic.State.Value("ACTIVE")
        if topic.HasField("schema_settings"):
            self._warn_once("schema", "pubsub emulator: schema settings are stored but not enforced")
        with self.lock:
            if request.name in self.topics:
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"Topic already exists (resource={request.name})")
            self.topics[request.name] = topic
        log.debug("created topic %s", request.name)
        return topic

    def get_topic(self, name: str) -> Any:
        check_topic_name(name)
        with self.lock:
            topic = self.topics.get(name)
            if topic is None:
                raise _not_found(f"Topic does not exist (resource={name})")
            return topic

    def update_topic(self, request: Any) -> Any:
        name = request.topic.name
        paths = list(request.update_mask.paths)
        if not paths:
            raise _invalid("update_mask must name at least one field")
        allowed = {"labels", "message_retention_duration", "message_storage_policy", "kms_key_name", "schema_settings"}
        bad = [p for p in paths if p.split(".")[0] not in allowed]
        if bad:
            raise _invalid(f"Cannot update fields: {bad}")
        with self.lock:
            topic = self.get_topic(name)
            updated = Topic()
            updated.CopyFrom(topic)
            request.update_mask.MergeMessage(request.topic, updated, True, True)
            self.topics[name] = updated
            return updated

    def list_topics(self, request: Any) -> Any:
        project = _check_project(request.project)
        prefix = f"projects/{project}/topics/"
        with self.lock:
            names = sorted(n for n in self.topics if n.startswith(prefix))
            chunk, token = _page(names, request.page_size, request.page_token)
            response = ListTopicsResponse(next_page_token=token)
            response.topics.extend(self.topics[n] for n in chunk)
        return response

    def list_topic_subscriptions(self, request: Any) -> Any:
        self.get_topic(request.topic)
        with self.lock:
            names = sorted(self.topic_subs.get(request.topic, ()))
        chunk, token = _page(names, request.page_size, request.page_token)
        return ListTopicSubscriptionsResponse(subscriptions=chunk, next_page_token=token)

    def list_topic_snapshots(self, request: Any) -> Any:
        self.get_topic(request.topic)
        return ListTopicSnapshotsResponse()  # snapshots are not implemented: there are never any

    def delete_topic(self, name: str) -> None:
        check_topic_name(name)
        with self.lock:
            if self.topics.pop(name, None) is None:
                raise _not_found(f"Topic does not exist (resource={name})")
            for sub_name in self.topic_subs.pop(name, set()):
                self.subs[sub_name].pb.topic = DELETED_TOPIC
        log.debug("deleted topic %s", name)

    def publish(self, request: Any) -> list[str]:
        check_topic_name(request.topic)
        if not request.messages:
            raise _invalid("The request must contain at least one message")
        if len(request.messages) > MAX_PUBLISH_MESSAGES:
            raise _invalid(f"Too many messages to publish: {len(request.messages)} (at most {MAX_PUBLISH_MESSAGES})")
        if request.ByteSize() > MAX_PUBLISH_BYTES:
            raise _invalid(f"Request payload size {request.ByteSize()} exceeds the limit of {MAX_PUBLISH_BYTES} bytes")
        for m in request.messages:
            if not m.data and not m.attributes:
                raise _invalid("Some messages are empty: a message needs a non-empty data field or attributes")
            if len(m.attributes) > MAX_ATTRIBUTES:
                raise _invalid(f"A message has {len(m.attributes)} attributes (at most {MAX_ATTRIBUTES})")
            for key, value in m.attributes.items():
                if not key:
                    raise _invalid("Attribute keys must not be empty")
                if len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES or len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
                    raise _invalid(f"Attribute keys are at most {MAX_ATTRIBUTE_KEY_BYTES} bytes and values at most "
                                   f"{MAX_ATTRIBUTE_VALUE_BYTES} bytes")
            if len(m.ordering_key.encode()) > MAX_ORDERING_KEY_BYTES:
                raise _invalid(f"Ordering keys are at most {MAX_ORDERING_KEY_BYTES} bytes")
        with self.lock:
            if request.topic not in self.topics:
                raise _not_found(f"Topic does not exist (resource={request.topic})")
            return self._publish_locked(request.topic, request.messages)

    def _publish_locked(self, topic: str, messages: Any) -> list[str]:
        now_ns = time.time_ns()
        stored = []
        for m in messages:
            msg = PubsubMessage()
            msg.CopyFrom(m)
            msg.message_id = str(next(self._message_ids))
            msg.publish_time.FromNanoseconds(now_ns)
            stored.append((next(self._seq), msg, msg.ByteSize()))
        for sub_name in self.topic_subs.get(topic, ()):
            sub = self.subs[sub_name]
            for seq, msg, size in stored:
                if sub.accepts(msg.attributes):  # the service acknowledges what the filter does not match
                    self._enqueue(sub, _Entry(seq, msg, msg.ordering_key if sub.ordered else "", size))
            sub.cond.notify_all()
        self.push_wakeup.set()
        return [msg.message_id for _, msg, _ in stored]

    # -- subscriptions ------------------------------------------------------------------------------------------
    def _validate_subscription(self, sub: Any) -> None:
        """Normalise defaults and bounds of a Subscription about to be stored (create or update)."""
        if not 0 <= sub.ack_deadline_seconds <= MAX_ACK_DEADLINE:
            raise _invalid(f"ack_deadline_seconds out of bounds: {sub.ack_deadline_seconds} (at most "
                           f"{MAX_ACK_DEADLINE})")
        sub.ack_deadline_seconds = self._clamp_deadline(sub.ack_deadline_seconds)
        if sub.HasField("push_config") and sub.push_config.push_endpoint:
            try:
                check_push_endpoint(sub.push_config.push_endpoint)
            except ValueError as exc:
                raise _invalid(str(exc)) from None
        if sub.HasField("retry_policy"):
            bounds = [d.ToNanoseconds() / 1e9 for d in (sub.retry_policy.minimum_backoff,
                                                        sub.retry_policy.maximum_backoff)]
            if not all(0 <= b <= MAX_BACKOFF_SECONDS for b in bounds):
                raise _invalid(f"retry_policy backoffs must be within 0..{MAX_BACKOFF_SECONDS} seconds")
            if sub.retry_policy.HasField("maximum_backoff") and bounds[0] > bounds[1]:
                raise _invalid("retry_policy.minimum_backoff must not exceed maximum_backoff")
        for export in ("bigquery_config", "cloud_storage_config", "bigtable_config"):
            if export in sub.DESCRIPTOR.fields_by_name and sub.HasField(export):
                raise ApiError(grpc.StatusCode.UNIMPLEMENTED, f"{export} subscriptions are not supported")
        try:
            compile_filter(sub.filter)
        except FilterError as exc:
            raise _invalid(f"Invalid filter: {exc}") from None
        if sub.enable_exactly_once_delivery:
            self._warn_once("eod", "pubsub emulator: exactly-once delivery is stored but not enforced")
        if sub.HasField("dead_letter_policy"):
            policy = sub.dead_letter_policy
            if not policy.dead_letter_topic:
                sub.ClearField("dead_letter_policy")
            else:
                check_topic_name(policy.dead_letter_topic)
                if policy.dead_letter_topic not in self.topics:
                    raise _not_found(f"Dead letter topic does not exist (resource={policy.dead_letter_topic})")
                if policy.max_delivery_attempts == 0:
                    policy.max_delivery_attempts = DEFAULT_MAX_DELIVERY_ATTEMPTS
                if not MIN_MAX_DELIVERY_ATTEMPTS <= policy.max_delivery_attempts <= MAX_MAX_DELIVERY_ATTEMPTS:
                    bounds = f"{MIN_MAX_DELIVERY_ATTEMPTS}..{MAX_MAX_DELIVERY_ATTEMPTS}"
                    # OUT_OF_RANGE, as the service and gcloud's emulator answer
                    raise ApiError(grpc.StatusCode.OUT_OF_RANGE, f"max_delivery_attempts must be within {bounds}")
        if not sub.HasField("message_retention_duration"):
            sub.message_retention_duration.seconds = MESSAGE_RETENTION_SECONDS
        sub.state = Subscription.State.Value("ACTIVE")

    def create_subscription(self, request: Any) -> Any:
        check_subscription_name(request.name)
        if request.topic == DELETED_TOPIC:
            raise _invalid("Cannot create a subscription on a deleted topic")
        check_topic_name(request.topic)
        pb = Subscription()
        pb.CopyFrom(request)
        with self.lock:
            if request.name in self.subs:
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"Subscription already exists (resource={request.name})")
            if request.topic not in self.topics:
                raise _not_found(f"Topic does not exist (resource={request.topic})")
            self._validate_subscription(pb)
            self.subs[request.name] = _Sub(pb, self.lock)
            self.topic_subs[request.topic].add(request.name)
        log.debug("created subscription %s on %s", request.name, request.topic)
        return pb

    def get_subscription(self, name: str) -> Any:
        with self.lock:
            return self._sub(name).pb

    def update_subscription(self, request: Any) -> Any:
        name = request.subscription.name
        paths = list(request.update_mask.paths)
        if not paths:
            raise _invalid("update_mask must name at least one field")
        immutable = {"name", "topic", "enable_message_ordering", "filter"}
        known = Subscription.DESCRIPTOR.fields_by_name
        bad = [p for p in paths if p.split(".")[0] in immutable or p.split(".")[0] not in known]
        if bad:
            raise _invalid(f"Cannot update fields: {bad}")
        with self.lock:
            sub = self._sub(name)
            updated = Subscription()
            updated.CopyFrom(sub.pb)
            request.update_mask.MergeMessage(request.subscription, updated, True, True)
            self._validate_subscription(updated)
            sub.pb = updated
            sub.cond.notify_all()
            return updated

    def modify_push_config(self, request: Any) -> None:
        """Turn a subscription into a push one, change its endpoint, or (empty push_config) back into pull."""
        with self.lock:
            sub = self._sub(request.subscription)
            updated = Subscription()
            updated.CopyFrom(sub.pb)
            updated.push_config.CopyFrom(request.push_config)
            self._validate_subscription(updated)
            sub.pb = updated
        self.push_wakeup.set()

    def list_subscriptions(self, request: Any) -> Any:
        project = _check_project(request.project)
        prefix = f"projects/{project}/subscriptions/"
        with self.lock:
            names = sorted(n for n in self.subs if n.startswith(prefix))
            chunk, token = _page(names, request.page_size, request.page_token)
            response = ListSubscriptionsResponse(next_page_token=token)
            response.subscriptions.extend(self.subs[n].pb for n in chunk)
        return response

    def delete_subscription(self, name: str) -> None:
        with self.lock:
            sub = self._sub(name)
            del self.subs[name]
            topic_subs = self.topic_subs.get(sub.pb.topic)
            if topic_subs is not None:
                topic_subs.discard(name)
            sub.deleted = True
            sub.cond.notify_all()
        log.debug("deleted subscription %s", name)

    # -- message life cycle (all *_locked / private methods expect self.lock held) ------------------------------
    def _set(self, sub: _Sub, entry: _Entry, state: int) -> None:
        """Move ``entry`` to ``state``, keeping its key's busy count; READY entries join the ready heap."""
        if entry.key and (entry.state in BUSY) != (state in BUSY):
            sub.key_busy[entry.key] += 1 if state in BUSY else -1
        entry.state = state
        if state == READY:
            heapq.heappush(sub.ready, (entry.seq, entry))

    def _wake_key(self, sub: _Sub, key: str) -> None:
        """Once no message of ``key`` is outstanding or backing off, its waiting messages become deliverable: all of
        them, in order, for pull (as the service and gcloud's emulator do), the first only for push (the service
        pushes one message per key at a time)."""
        if sub.key_busy[key]:
            return
        for entry in sub.key_queues.get(key, ()):
            if entry.state == WAITING:
                self._set(sub, entry, READY)
                if sub.pb.push_config.push_endpoint:
                    break
            elif sub.pb.push_config.push_endpoint and entry.state == READY:
                break

    def _enqueue(self, sub: _Sub, entry: _Entry) -> None:
        sub.backlog += 1
        entry.state = WAITING
        if not entry.key:
            self._set(sub, entry, READY)
            return
        queue = sub.key_queues.setdefault(entry.key, collections.deque())
        queue.append(entry)
        if not sub.key_busy[entry.key] and (len(queue) == 1 or not sub.pb.push_config.push_endpoint):
            self._set(sub, entry, READY)

    def _finish(self, sub: _Sub, entry: _Entry) -> None:
        self._set(sub, entry, DONE)
        entry.ack_id = None
        sub.backlog -= 1
        if entry.key:
            queue = sub.key_queues[entry.key]
            if queue and queue[0] is entry:
                queue.popleft()
            else:
                queue.remove(entry)
            if queue:
                self._wake_key(sub, entry.key)
            else:
                del sub.key_queues[entry.key]
                del sub.key_busy[entry.key]

    def _release(self, sub: _Sub, entry: _Entry) -> None:
        """A delivery failed (nack or ack deadline lapsed): redeliver, or dead-letter after too many attempts.
        With ordering, the later messages of its key are taken back too and come again after it (the service
        redelivers a nacked message and every message after it for its key)."""
        entry.ack_id = None
        dead_letter = sub.dead_letter
        if dead_letter and entry.attempts >= dead_letter[1]:
            dl_topic = dead_letter[0]
            if dl_topic in self.topics:
                forwarded = PubsubMessage()
                forwarded.data = entry.msg.data
                forwarded.ordering_key = entry.msg.ordering_key
                forwarded.attributes.update(entry.msg.attributes)
                project = sub.pb.name.split("/")[1]
                forwarded.attributes.update(
                    {
                        "CloudPubSubDeadLetterSourceDeliveryCount": str(entry.attempts),
                        "CloudPubSubDeadLetterSourceSubscription": sub.pb.name.split("/")[-1],
                        "CloudPubSubDeadLetterSourceSubscriptionProject": project,
                        "CloudPubSubDeadLetterSourceTopicPublishTime": entry.msg.publish_time.ToJsonString(),
                    }
                )
                self._publish_locked(dl_topic, [forwarded])
                log.debug("dead-lettered message %s of %s to %s", entry.msg.message_id, sub.pb.name, dl_topic)
                self._finish(sub, entry)
                return
            self._warn_once(f"dlt:{dl_topic}", f"pubsub emulator: dead letter topic {dl_topic} is gone; redelivering")
        if entry.key:
            for later in sub.key_queues[entry.key]:
                if later.seq > entry.seq and later.state in (OUTSTANDING, READY):
                    if later.ack_id is not None:
                        sub.outstanding.pop(later.ack_id, None)
                        later.ack_id = None
                    self._set(sub, later, WAITING)
        delay = sub.backoff(entry.attempts)
        if delay > 0:
            self._set(sub, entry, DELAYED)
            heapq.heappush(sub.delayed, (time.monotonic() + delay, entry.seq, entry))
            return
        self._set(sub, entry, READY)
        if entry.key:
            self._wake_key(sub, entry.key)
        self.push_wakeup.set()

    def _undelay(self, sub: _Sub, now: float) -> bool:
        """Messages whose retry backoff is over become deliverable again."""
        moved = False
        while sub.delayed and sub.delayed[0][0] <= now:
            entry = heapq.heappop(sub.delayed)[2]
            if entry.state == DELAYED:
                self._set(sub, entry, READY)
                if entry.key:
                    self._wake_key(sub, entry.key)
                moved = True
        return moved

    def _expire(self, sub: _Sub, now: float) -> bool:
        expired = False
        while sub.expiry and sub.expiry[0][0] <= now:
            _, ack_id = heapq.heappop(sub.expiry)
            entry = sub.outstanding.get(ack_id)
            if entry is not None and entry.deadline <= now:
                del sub.outstanding[ack_id]
                self._release(sub, entry)
                expired = True
        return expired

    def sweep(self) -> None:
        """Redeliver messages whose ack deadline lapsed (run periodically by the server)."""
        now = time.monotonic()
        with self.lock:
            for sub in self.subs.values():
                if sub.expiry and sub.expiry[0][0] <= now and self._expire(sub, now):
                    sub.cond.notify_all()
                if sub.delayed and sub.delayed[0][0] <= now and self._undelay(sub, now):
                    sub.cond.notify_all()
                    self.push_wakeup.set()

    def _deliver(self, sub: _Sub, max_messages: int, deadline_s: int, max_bytes: int = 0) -> list[tuple]:
        now = time.monotonic()
        self._expire(sub, now)
        self._undelay(sub, now)
        out: list[tuple] = []
        total = 0
        with_attempt = sub.dead_letter is not None
        while sub.ready and len(out) < max_messages:
            _, entry = sub.ready[0]
            if entry.state != READY:
                heapq.heappop(sub.ready)
                continue
            if max_bytes and out and total + entry.size > max_bytes:
                break
            heapq.heappop(sub.ready)
            entry.attempts += 1
            self._set(sub, entry, OUTSTANDING)
            self._acks_issued += 1
            entry.ack_id = f"{self._acks_issued}-{entry.seq}"
            entry.deadline = now + deadline_s
            sub.outstanding[entry.ack_id] = entry
            heapq.heappush(sub.expiry, (entry.deadline, entry.ack_id))
            total += entry.size
            out.append((entry.ack_id, entry.msg, entry.attempts if with_attempt else 0, entry.size))
        return out

    def _ack_locked(self, sub: _Sub, ack_ids: Any) -> None:
        changed = False
        for ack_id in ack_ids:
            entry = sub.outstanding.pop(ack_id, None)
            if entry is not None:
                self._finish(sub, entry)
                changed = True
        if changed:
            sub.cond.notify_all()

    def _modack_locked(self, sub: _Sub, ack_ids: Any, seconds: int) -> None:
        if not 0 <= seconds <= MAX_ACK_DEADLINE:
            raise _invalid(f"Invalid ack deadline {seconds}: must be within 0..{MAX_ACK_DEADLINE} seconds")
        now = time.monotonic()
        changed = False
        for ack_id in ack_ids:
            entry = sub.outstanding.get(ack_id)
            if entry is None:
                continue
            if seconds == 0:
                del sub.outstanding[ack_id]
                self._release(sub, entry)
                changed = True
            else:
                entry.deadline = now + seconds
                heapq.heappush(sub.expiry, (entry.deadline, ack_id))
        if changed:
            sub.cond.notify_all()

    # -- subscriber RPCs ----------------------------------------------------------------------------------------
    def acknowledge(self, subscription: str, ack_ids: Any) -> None:
        if not ack_ids:
            raise _invalid("ack_ids must not be empty")
        with self.lock:
            sub = self._sub(subscription)
            self._check_ack_ids(ack_ids)
            self._ack_locked(sub, ack_ids)

    def modify_ack_deadline(self, subscription: str, ack_ids: Any, seconds: int) -> None:
        if not ack_ids:
            raise _invalid("ack_ids must not be empty")
        with self.lock:
            sub = self._sub(subscription)
            self._check_ack_ids(ack_ids)
            self._modack_locked(sub, ack_ids, seconds)

    def pull(self, request: Any, alive: Callable[[], bool] = lambda: True) -> Any:
        if request.max_messages <= 0:
            raise _invalid("max_messages must be a positive integer")
        limit = min(request.max_messages, MAX_MESSAGES_PER_RESPONSE)
        give_up = time.monotonic() + (0 if request.return_immediately else MAX_PULL_WAIT)
        with self.lock:
            sub = self._sub(request.subscription)
            while True:
                batch = self._deliver(sub, limit, sub.pb.ack_deadline_seconds, MAX_BYTES_PER_RESPONSE)
                left = give_up - time.monotonic()
                if batch or left <= 0 or sub.deleted or not alive():
                    break
                sub.cond.wait(left)
            if sub.deleted:
                raise _not_found(f"Subscription does not exist (resource={request.subscription})")
        response = PullResponse()
        _fill(response.received_messages, batch)
        return response

    def streaming_pull(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            first = next(requests)
        except StopIteration:
            return
        if not first.subscription:
            raise _invalid("The first StreamingPullRequest must name a subscription")
        with self.lock:
            sub = self._sub(first.subscription)
        stream = _Stream(
            ack_deadline=self._clamp_deadline(first.stream_ack_deadline_seconds),
            max_messages=max(0, first.max_outstanding_messages),
            max_bytes=max(0, first.max_outstanding_bytes),
        )

        def close() -> None:
            with self.lock:
                stream.closed = True
                sub.cond.notify_all()

        def handle(request: Any) -> None:
            if len(request.modify_deadline_ack_ids) != len(request.modify_deadline_seconds):
                raise _invalid("modify_deadline_ack_ids and modify_deadline_seconds must have the same length")
            with self.lock:
                if request.ack_ids:
                    self._ack_locked(sub, request.ack_ids)
                if request.modify_deadline_ack_ids:
                    by_seconds: dict[int, list[str]] = collections.defaultdict(list)
                    for ack_id, seconds in zip(
                        request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=True
                    ):
                        by_seconds[seconds].append(ack_id)
                    for seconds, ids in by_seconds.items():
                        self._modack_locked(sub, ids, seconds)
                if request.stream_ack_deadline_seconds:
                    stream.ack_deadline = self._clamp_deadline(request.stream_ack_deadline_seconds)

        def read() -> None:
            try:
                for request in requests:
                    handle(request)
            except ApiError as exc:
                stream.error = exc
            except Exception:  # cancelled / connection gone: the stream just ends
                pass
            finally:
                close()

        handle(first)
        context.add_callback(close)
        reader = threading.Thread(target=read, name="streaming-pull-reader", daemon=True)
        reader.start()
        properties = StreamingPullResponse.SubscriptionProperties(
            message_ordering_enabled=sub.pb.enable_message_ordering,
            exactly_once_delivery_enabled=False,
        )
        try:
            while True:
                with self.lock:
                    batch: list[tuple] = []
                    while not (stream.closed or sub.deleted or stream.error):
                        for ack_id in [a for a in stream.delivered if a not in sub.outstanding]:
                            del stream.delivered[ack_id]
                        room = MAX_MESSAGES_PER_RESPONSE
                        room_bytes = MAX_BYTES_PER_RESPONSE
                        if stream.max_messages:
                            room = min(room, stream.max_messages - len(stream.delivered))
                        if stream.max_bytes:
                            room_bytes = min(room_bytes, stream.max_bytes - sum(stream.delivered.values()))
                        if room > 0 and (room_bytes > 0 or not stream.delivered):
                            batch = self._deliver(sub, room, stream.ack_deadline, max(room_bytes, 1))
                            if batch:
                                stream.delivered.update((b[0], b[3]) for b in batch)
                                break
                        sub.cond.wait(0.5)
                    error = stream.error
                    if error is None and sub.deleted and not stream.closed:
                        error = _not_found(f"Subscription does not exist (resource={first.subscription})")
                if error is not None:
                    raise error
                if not batch:
                    return  # client half-closed or cancelled
                response = StreamingPullResponse(subscription_properties=properties)
                _fill(response.received_messages, batch)
                yield response
        finally:
            close()
            reader.join(timeout=1.0)


def _fill(received: Any, batch: list[tuple]) -> None:
    for ack_id, msg, attempt, _ in batch:
        rm = received.add()
        rm.ack_id = ack_id
        rm.message.CopyFrom(msg)
        if attempt:
            rm.delivery_attempt = attempt


# --- gRPC plumbing ---------------------------------------------------------------------------------------------


def _unary(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    @functools.wraps(fn)
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except ApiError as exc:
            error = exc
        except Exception as exc:
            log.exception("pubsub emulator: internal error in %s", fn.__name__)
            error = ApiError(grpc.StatusCode.INTERNAL, f"internal emulator error: {exc!r}")
        context.abort(error.code, error.message)

    return handler


def _stream(fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    @functools.wraps(fn)
    def handler(request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request_iterator, context)
            return
        except ApiError as exc:
            error = exc
        except Exception as exc:
            log.exception("pubsub emulator: internal error in %s", fn.__name__)
            error = ApiError(grpc.StatusCode.INTERNAL, f"internal emulator error: {exc!r}")
        context.abort(error.code, error.message)

    return handler


def _u(fn: Callable, request_cls: Any, response_cls: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        _unary(fn), request_deserializer=request_cls.FromString, response_serializer=response_cls.SerializeToString
    )


def build_handlers(state: PubSubState) -> list[grpc.GenericRpcHandler]:
    """Generic handlers for the Publisher and Subscriber services backed by ``state``."""
    s = state

    def create_topic(r, c):
        return s.create_topic(r)

    def update_topic(r, c):
        return s.update_topic(r)

    def publish(r, c):
        return PublishResponse(message_ids=s.publish(r))

    def get_topic(r, c):
        return s.get_topic(r.topic)

    def list_topics(r, c):
        return s.list_topics(r)

    def list_topic_subscriptions(r, c):
        return s.list_topic_subscriptions(r)

    def list_topic_snapshots(r, c):
        return s.list_topic_snapshots(r)

    def delete_topic(r, c):
        s.delete_topic(r.topic)
        return Empty()

    def create_subscription(r, c):
        return s.create_subscription(r)

    def get_subscription(r, c):
        return s.get_subscription(r.subscription)

    def update_subscription(r, c):
        return s.update_subscription(r)

    def list_subscriptions(r, c):
        return s.list_subscriptions(r)

    def delete_subscription(r, c):
        s.delete_subscription(r.subscription)
        return Empty()

    def pull(r, c):
        return s.pull(r, alive=c.is_active)

    def modify_push_config(r, c):
        s.modify_push_config(r)
        return Empty()

    def acknowledge(r, c):
        s.acknowledge(r.subscription, r.ack_ids)
        return Empty()

    def modify_ack_deadline(r, c):
        s.modify_ack_deadline(r.subscription, r.ack_ids, r.ack_deadline_seconds)
        return Empty()

    def streaming_pull(requests, c):
        return s.streaming_pull(requests, c)

    publisher = grpc.method_handlers_generic_handler(
        PUBLISHER_SERVICE,
        {
            "CreateTopic": _u(create_topic, Topic, Topic),
            "UpdateTopic": _u(update_topic, UpdateTopicRequest, Topic),
            "Publish": _u(publish, PublishRequest, PublishResponse),
            "GetTopic": _u(get_topic, GetTopicRequest, Topic),
            "ListTopics": _u(list_topics, ListTopicsRequest, ListTopicsResponse),
            "ListTopicSubscriptions": _u(
                list_topic_subscriptions, ListTopicSubscriptionsRequest, ListTopicSubscriptionsResponse
            ),
            "ListTopicSnapshots": _u(list_topic_snapshots, ListTopicSnapshotsRequest, ListTopicSnapshotsResponse),
            "DeleteTopic": _u(delete_topic, DeleteTopicRequest, Empty),
        },
    )
    subscriber = grpc.method_handlers_generic_handler(
        SUBSCRIBER_SERVICE,
        {
            "CreateSubscription": _u(create_subscription, Subscription, Subscription),
            "GetSubscription": _u(get_subscription, GetSubscriptionRequest, Subscription),
            "UpdateSubscription": _u(update_subscription, UpdateSubscriptionRequest, Subscription),
            "ListSubscriptions": _u(list_subscriptions, ListSubscriptionsRequest, ListSubscriptionsResponse),
            "DeleteSubscription": _u(delete_subscription, DeleteSubscriptionRequest, Empty),
            "Pull": _u(pull, PullRequest, PullResponse),
            "ModifyPushConfig": _u(modify_push_config, ModifyPushConfigRequest, Empty),
            "Acknowledge": _u(acknowledge, AcknowledgeRequest, Empty),
            "ModifyAckDeadline": _u(modify_ack_deadline, ModifyAckDeadlineRequest, Empty),
            "StreamingPull": grpc.stream_stream_rpc_method_handler(
                _stream(streaming_pull),
                request_deserializer=StreamingPullRequest.FromString,
                response_serializer=StreamingPullResponse.SerializeToString,
            ),
        },
    )
    return [publisher, subscriber]


class PubSubEmulator:
    """An in-process gRPC Pub/Sub emulator.

    >>> emu = PubSubEmulator(port=0).start()   # port 0: pick a free port
    >>> emu.address                            # "127.0.0.1:54321" -> PUBSUB_EMULATOR_HOST
    >>> emu.stop()
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8085,
        *,
        min_ack_deadline: int = DEFAULT_ACK_DEADLINE,
        max_workers: int = 64,
        sweep_interval: float = 0.1,
    ):
        self.host = host
        self.port = port
        self.state = PubSubState(min_ack_deadline=min_ack_deadline)
        self.max_workers = max_workers
        self.sweep_interval = sweep_interval
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._pusher: Pusher | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> PubSubEmulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="pubsub-emulator"),
            handlers=build_handlers(self.state),
            options=[
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
                ("grpc.so_reuseport", 0),
            ],
        )
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if bound == 0:
            raise OSError(f"cannot bind {self.host}:{self.port}")
        self.port = bound
        server.start()
        self._server = server
        self._sweeper = threading.Thread(target=self._sweep_loop, name="pubsub-emulator-sweeper", daemon=True)
        self._sweeper.start()
        self._pusher = Pusher(self.state).start()
        return self

    def _sweep_loop(self) -> None:
        while not self._stopped.wait(self.sweep_interval):
            try:
                self.state.sweep()
            except Exception:
                log.exception("pubsub emulator: sweeper failed")

    def stop(self, grace: float | None = 1.0) -> None:
        self._stopped.set()
        with self.state.lock:  # wake every StreamingPull so it can end
            for sub in self.state.subs.values():
                sub.cond.notify_all()
        if self._server is not None:
            self._server.stop(grace).wait()
        if self._sweeper is not None:
            self._sweeper.join(timeout=2)
        if self._pusher is not None:
            self._pusher.stop()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        assert self._server is not None, "not started"
        return self._server.wait_for_termination(timeout)

    def __enter__(self) -> PubSubEmulator:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8085,
    *,
    min_ack_deadline: int = DEFAULT_ACK_DEADLINE,
    max_workers: int = 64,
) -> PubSubEmulator:
    """Start an emulator on ``host:port`` (``port=0`` picks a free one) and return it, already serving."""
    return PubSubEmulator(host, port, min_ack_deadline=min_ack_deadline, max_workers=max_workers).start()


def wait_ready(address: str, timeout: float = 15.0) -> None:
    """Block until a Pub/Sub emulator answers ListTopics on ``address`` ("host:port"); TimeoutError otherwise."""
    give_up = time.monotonic() + timeout
    last: Exception | None = None
    with grpc.insecure_channel(address) as channel:
        list_topics = channel.unary_unary(
            f"/{PUBLISHER_SERVICE}/ListTopics",
            request_serializer=ListTopicsRequest.SerializeToString,
            response_deserializer=ListTopicsResponse.FromString,
        )
        while time.monotonic() < give_up:
            try:
                list_topics(ListTopicsRequest(project="projects/wait-ready", page_size=1), timeout=1.0)
                return
            except grpc.RpcError as exc:
                last = exc
                time.sleep(0.1)
    raise TimeoutError(f"pubsub emulator at {address} not ready after {timeout}s: {last}")
