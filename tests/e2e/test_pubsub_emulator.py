"""End-to-end tests of infra.local.pubsub_emulator with the official google-cloud-pubsub client and Beam.

The ``pubsub_emulator`` fixture (conftest.py) runs the emulator as a separate process with
``--min-ack-deadline 1`` and points PUBSUB_EMULATOR_HOST at it.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1 import types

from tests.e2e.conftest import gcloud_gap

pytestmark = pytest.mark.e2e

PROJECT = "leadflow-e2e"


def _name(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def publisher(each_pubsub_emulator):
    client = pubsub_v1.PublisherClient()
    yield client
    client.stop()


@pytest.fixture
def subscriber(each_pubsub_emulator):
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def _topic(publisher, tag: str = "topic") -> str:
    path = publisher.topic_path(PROJECT, _name(tag))
    publisher.create_topic(name=path)
    return path


def _sub(subscriber, topic: str, tag: str = "sub", **kwargs) -> str:
    path = subscriber.subscription_path(PROJECT, _name(tag))
    subscriber.create_subscription(request={"name": path, "topic": topic, **kwargs})
    return path


def _pull(subscriber, sub: str, max_messages: int = 100):
    """What is deliverable now. return_immediately (documented, deprecated) because how long an empty Pull may be
    held is the server's choice: gcloud's emulator holds it up to the deadline, ours for 0.5 s."""
    return list(subscriber.pull(subscription=sub, max_messages=max_messages, return_immediately=True,
                                timeout=10).received_messages)


def _pull_all(subscriber, sub: str, expected: int, timeout: float = 15.0, ack: bool = True):
    got = []
    give_up = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < give_up:
        batch = _pull(subscriber, sub, max_messages=expected - len(got))
        if batch and ack:
            subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in batch])
        got.extend(batch)
    return got


def test_streaming_pull_batched_publish_exactly_once(publisher, subscriber):
    batching = pubsub_v1.PublisherClient(
        batch_settings=types.BatchSettings(max_messages=100, max_bytes=512 * 1024, max_latency=0.05)
    )
    topic = _topic(publisher)
    sub = _sub(subscriber, topic)
    n = 500
    futures = [batching.publish(topic, f"lead-{i}".encode(), idx=str(i), provider=f"p{i % 7}") for i in range(n)]
    ids = [f.result(timeout=20) for f in futures]
    batching.stop()
    assert len(set(ids)) == n

    received: dict[str, list] = collections.defaultdict(list)
    lock = threading.Lock()
    done = threading.Event()

    def callback(message):
        with lock:
            received[message.message_id].append(message)
            if len(received) >= n:
                done.set()
        message.ack()

    future = subscriber.subscribe(sub, callback, flow_control=types.FlowControl(max_messages=200))
    try:
        assert done.wait(30), f"only {len(received)} of {n} messages arrived"
        time.sleep(0.5)  # give duplicates a chance to show up
    finally:
        future.cancel()
        future.result(timeout=10)

    assert set(received) == set(ids)
    assert all(len(copies) == 1 for copies in received.values())
    by_id = dict(zip(ids, range(n), strict=True))
    for message_id, (message,) in received.items():
        i = by_id[message_id]
        assert message.data == f"lead-{i}".encode()
        assert dict(message.attributes) == {"idx": str(i), "provider": f"p{i % 7}"}
        assert message.publish_time is not None
        assert message.delivery_attempt is None  # no dead-letter policy
    time.sleep(0.3)
    assert list(subscriber.pull(subscription=sub, max_messages=10, return_immediately=True).received_messages) == []


def test_pull_ack_nack_and_ack_deadline(publisher, subscriber):
    topic = _topic(publisher)
    sub = _sub(subscriber, topic)
    assert subscriber.get_subscription(subscription=sub).ack_deadline_seconds == 10
    for i in range(3):
        publisher.publish(topic, f"m{i}".encode(), n=str(i)).result(timeout=10)

    first = _pull(subscriber, sub)
    assert [m.message.data for m in first] == [b"m0", b"m1", b"m2"]
    assert all(m.delivery_attempt == 0 for m in first)
    subscriber.acknowledge(subscription=sub, ack_ids=[first[0].ack_id])
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first[1].ack_id], ack_deadline_seconds=0)

    again = _pull(subscriber, sub)  # the nacked message comes back at once; m2 is still leased for 10 s
    assert [(m.message.data, m.message.message_id) for m in again] == [(b"m1", first[1].message.message_id)]
    assert again[0].ack_id != first[1].ack_id
    subscriber.acknowledge(subscription=sub, ack_ids=[again[0].ack_id])
    assert _pull(subscriber, sub) == []

    # shorten m2's lease to 1 s: it is redelivered once that lapses
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first[2].ack_id], ack_deadline_seconds=1)
    time.sleep(1.3)
    redelivered = _pull(subscriber, sub)
    assert [m.message.data for m in redelivered] == [b"m2"]
    subscriber.acknowledge(subscription=sub, ack_ids=[first[2].ack_id])  # stale ack id: ignored
    subscriber.acknowledge(subscription=sub, ack_ids=[redelivered[0].ack_id])
    assert _pull(subscriber, sub) == []

    # a subscription whose own ack deadline is 1 s (the fixture lowers the emulator minimum to 1 s)
    short = _sub(subscriber, topic, ack_deadline_seconds=1)
    assert subscriber.get_subscription(subscription=short).ack_deadline_seconds == 1
    publisher.publish(topic, b"lapse").result(timeout=10)
    leased = _pull(subscriber, short)
    assert [m.message.data for m in leased] == [b"lapse"]
    assert _pull(subscriber, short) == []  # leased, not yet lapsed
    time.sleep(1.3)
    back = _pull(subscriber, short)
    assert [m.message.message_id for m in back] == [leased[0].message.message_id]
    subscriber.acknowledge(subscription=short, ack_ids=[back[0].ack_id])
    time.sleep(1.3)
    assert _pull(subscriber, short) == []


def test_ordering_keys(publisher, subscriber):
    ordered = pubsub_v1.PublisherClient(
        publisher_options=types.PublisherOptions(enable_message_ordering=True),
        batch_settings=types.BatchSettings(max_messages=10, max_latency=0.01),
    )
    topic = _topic(publisher)
    streamed_sub = _sub(subscriber, topic, enable_message_ordering=True)
    pulled_sub = _sub(subscriber, topic, enable_message_ordering=True)
    keys = ["alpha", "beta", "gamma"]
    futures = [ordered.publish(topic, f"{k}:{i}".encode(), ordering_key=k) for i in range(20) for k in keys]
    for f in futures:
        f.result(timeout=20)
    ordered.stop()

    # Server side: each key's messages are handed out in publish order (documented; both emulators hand out the
    # waiting messages of a key together).
    def pulled_in_order(expected: int) -> dict[str, list[int]]:
        got: dict[str, list[int]] = collections.defaultdict(list)
        received = []
        give_up = time.monotonic() + 15
        while len(received) < expected and time.monotonic() < give_up:
            received.extend(_pull(subscriber, pulled_sub, max_messages=1000))
        for m in received:
            key, i = m.message.data.decode().split(":")
            assert m.message.ordering_key == key
            got[key].append(int(i))
        return got, received

    order, received = pulled_in_order(60)
    assert order == {k: list(range(20)) for k in keys}
    # Nack every alpha message, ack the rest: alpha comes back, still in order; nothing else does.
    alpha = [m.ack_id for m in received if m.message.ordering_key == "alpha"]
    subscriber.modify_ack_deadline(subscription=pulled_sub, ack_ids=alpha, ack_deadline_seconds=0)
    subscriber.acknowledge(subscription=pulled_sub, ack_ids=[m.ack_id for m in received if m.ack_id not in alpha])
    order, received = pulled_in_order(20)
    assert order == {"alpha": list(range(20))}
    subscriber.acknowledge(subscription=pulled_sub, ack_ids=[m.ack_id for m in received])

    # Client side: streaming pull sees every key in publish order.
    seen: dict[str, list[int]] = collections.defaultdict(list)
    lock = threading.Lock()
    done = threading.Event()

    def callback(message):
        key, i = message.data.decode().split(":")
        with lock:
            seen[key].append(int(i))
            if sum(map(len, seen.values())) >= 60:
                done.set()
        message.ack()

    future = subscriber.subscribe(streamed_sub, callback)
    try:
        assert done.wait(30), dict(seen)
    finally:
        future.cancel()
        future.result(timeout=10)
    assert {k: v for k, v in seen.items()} == {k: list(range(20)) for k in keys}


def test_dead_letter_policy(publisher, subscriber):
    topic = _topic(publisher)
    dead_topic = _topic(publisher, "dead")
    dead_sub = _sub(subscriber, dead_topic, "dead-sub")
    sub = _sub(subscriber, topic, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5})
    policy = subscriber.get_subscription(subscription=sub).dead_letter_policy
    assert (policy.dead_letter_topic, policy.max_delivery_attempts) == (dead_topic, 5)
    default = _sub(subscriber, topic, dead_letter_policy={"dead_letter_topic": dead_topic})
    assert subscriber.get_subscription(subscription=default).dead_letter_policy.max_delivery_attempts == 5
    subscriber.delete_subscription(subscription=default)
    with pytest.raises(exceptions.OutOfRange):  # as the service and both emulators answer
        _sub(subscriber, topic, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 4})
    with pytest.raises(exceptions.OutOfRange):
        _sub(subscriber, topic, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 101})

    message_id = publisher.publish(topic, b"poison", lead="42").result(timeout=10)
    for attempt in range(1, 6):
        (received,) = _pull(subscriber, sub)
        assert received.message.message_id == message_id
        assert received.delivery_attempt == attempt
        subscriber.modify_ack_deadline(subscription=sub, ack_ids=[received.ack_id], ack_deadline_seconds=0)

    assert _pull(subscriber, sub) == []
    (dead,) = _pull_all(subscriber, dead_sub, 1)
    assert dead.message.data == b"poison"
    assert dead.message.attributes["lead"] == "42"
    assert dead.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert dead.message.attributes["CloudPubSubDeadLetterSourceSubscription"] == sub.rsplit("/", 1)[1]
    assert dead.delivery_attempt == 0  # the dead-letter subscription has no policy of its own


def test_status_codes(publisher, subscriber):
    topic = _topic(publisher)
    sub = _sub(subscriber, topic)
    missing_topic = publisher.topic_path(PROJECT, _name("missing"))
    missing_sub = subscriber.subscription_path(PROJECT, _name("missing"))

    with pytest.raises(exceptions.NotFound):
        publisher.publish(missing_topic, b"x").result(timeout=10)
    with pytest.raises(exceptions.NotFound):
        subscriber.pull(subscription=missing_sub, max_messages=1, timeout=10)
    with pytest.raises(exceptions.NotFound):
        publisher.get_topic(topic=missing_topic)
    with pytest.raises(exceptions.NotFound):
        subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, _name("s")), topic=missing_topic)
    with pytest.raises(exceptions.NotFound):
        subscriber.delete_subscription(subscription=missing_sub)
    with pytest.raises(exceptions.NotFound):
        subscriber.acknowledge(subscription=missing_sub, ack_ids=["1-1"])

    with pytest.raises(exceptions.AlreadyExists):
        publisher.create_topic(name=topic)
    with pytest.raises(exceptions.AlreadyExists):
        subscriber.create_subscription(name=sub, topic=topic)

    for bad in [
        "projects/p/topics/ab",
        "projects/p/topics/1abc",
        "projects/p/topics/goog-x",
        "topics/abc",
        "projects/p/topics/has space",
        "projects/p/subscriptions/abc",
        "projects/p/topics/" + "a" * 256,
    ]:
        with pytest.raises(exceptions.InvalidArgument):
            publisher.create_topic(name=bad)
    ok = publisher.topic_path(PROJECT, "a" * 3 + "-_.~+%" + "z" * 246)
    assert publisher.create_topic(name=ok).name == ok
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.create_subscription(name="projects/p/subscriptions/x", topic=topic)
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, _name("s")), topic="nope")
    with pytest.raises(exceptions.InvalidArgument):
        publisher.publish(topic, b"").result(timeout=10)  # neither data nor attributes
    assert publisher.publish(topic, b"", only="attributes").result(timeout=10)
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.pull(subscription=sub, max_messages=0, timeout=10, retry=None)
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.modify_ack_deadline(subscription=sub, ack_ids=["1-1"], ack_deadline_seconds=601, retry=None)
    # an ack id never handed out (retry=None: a client retries some codes for up to 600 s)
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.acknowledge(subscription=sub, ack_ids=["garbage"], retry=None, timeout=10)
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.modify_ack_deadline(subscription=sub, ack_ids=["garbage"], ack_deadline_seconds=10, retry=None,
                                       timeout=10)
    with pytest.raises(exceptions.InvalidArgument):  # the service takes at most 1,000 messages per Publish
        _raw_publisher().publish(topic=topic, messages=[{"data": b"x"}] * 1001, retry=None, timeout=10)
    with pytest.raises(exceptions.InvalidArgument):
        subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, _name("s")), topic=topic,
                                       ack_deadline_seconds=601)


def _raw_publisher():
    """The generated client: one Publish request as given (the batching client splits big batches itself)."""
    from google.pubsub_v1 import PublisherClient

    return PublisherClient()


def test_malformed_project_names_are_refused(publisher, request, each_pubsub_emulator):
    gcloud_gap(request, each_pubsub_emulator, "names")
    with pytest.raises(exceptions.InvalidArgument):
        publisher.create_topic(name="projects//topics/abc", retry=None)
    with pytest.raises(exceptions.InvalidArgument):
        list(publisher.list_topics(project="leadflow-e2e", retry=None))


def test_publish_size_limits(publisher, request, each_pubsub_emulator):
    """Documented limits: 10 MB per Publish request, attribute keys 256 bytes, values 1024, ordering keys 1 KB."""
    gcloud_gap(request, each_pubsub_emulator, "publish_sizes")
    topic = _topic(publisher)
    raw = _raw_publisher()
    assert raw.publish(topic=topic, messages=[{"data": b"x" * 4_000_000}] * 2, timeout=30).message_ids
    for messages in ([{"data": b"x" * 4_000_000}] * 3, [{"data": b"x", "attributes": {"k" * 257: "v"}}],
                     [{"data": b"x", "attributes": {"k": "v" * 1025}}], [{"data": b"x", "ordering_key": "k" * 1025}]):
        with pytest.raises(exceptions.InvalidArgument):
            raw.publish(topic=topic, messages=messages, retry=None, timeout=5)


def test_fan_out_and_late_subscription(publisher, subscriber):
    topic = _topic(publisher)
    subs = [_sub(subscriber, topic, "fan-a"), _sub(subscriber, topic, "fan-b")]
    ids = [publisher.publish(topic, f"{i}".encode(), i=str(i)).result(timeout=10) for i in range(30)]
    late = _sub(subscriber, topic, "late")
    for sub in subs:
        got = _pull_all(subscriber, sub, len(ids))
        assert sorted(m.message.message_id for m in got) == sorted(ids)
        assert {m.message.data for m in got} == {f"{i}".encode() for i in range(30)}
    assert _pull(subscriber, late) == []  # published before it existed
    assert sorted(publisher.list_topic_subscriptions(topic=topic)) == sorted([*subs, late])


def test_admin_listing_and_topic_deletion(publisher, subscriber):
    project = f"list-{uuid.uuid4().hex[:8]}"
    topics = [publisher.topic_path(project, f"t{i:03d}") for i in range(7)]
    for t in topics:
        publisher.create_topic(name=t)
    pages = publisher.list_topics(request={"project": f"projects/{project}", "page_size": 3}).pages
    names = [[t.name for t in page.topics] for page in pages]
    assert [len(p) for p in names] == [3, 3, 1]
    assert [name for page in names for name in page] == topics

    sub = subscriber.subscription_path(project, "orphan")
    subscriber.create_subscription(name=sub, topic=topics[0], ack_deadline_seconds=600)
    assert subscriber.get_subscription(subscription=sub).ack_deadline_seconds == 600
    publisher.publish(topics[0], b"kept").result(timeout=10)
    publisher.delete_topic(topic=topics[0])
    assert subscriber.get_subscription(subscription=sub).topic == "_deleted-topic_"
    with pytest.raises(exceptions.NotFound):
        publisher.delete_topic(topic=topics[0])
    assert [m.message.data for m in _pull_all(subscriber, sub, 1)] == [b"kept"]  # backlog survives
    listed = [s.name for s in subscriber.list_subscriptions(project=f"projects/{project}")]
    assert listed == [sub]
    subscriber.delete_subscription(subscription=sub)
    assert list(subscriber.list_subscriptions(project=f"projects/{project}")) == []


def _beam_transform(message):
    from apache_beam.io.gcp.pubsub import PubsubMessage

    return PubsubMessage(message.data.upper(), {**message.attributes, "stage": "beam"})


def test_beam_streaming_read_and_write(publisher, subscriber):
    import apache_beam as beam
    from apache_beam.io.gcp.pubsub import ReadFromPubSub, WriteToPubSub
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    in_topic = _topic(publisher, "beam-in")
    in_sub = _sub(subscriber, in_topic, "beam-in")
    out_topic = _topic(publisher, "beam-out")
    out_sub = _sub(subscriber, out_topic, "beam-out")

    options = PipelineOptions(runner="DirectRunner")
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | ReadFromPubSub(subscription=in_sub, with_attributes=True)
        | beam.Map(_beam_transform)
        | WriteToPubSub(topic=out_topic, with_attributes=True)
    )
    result = pipeline.run()
    try:
        n = 25
        for i in range(n):
            publisher.publish(in_topic, f"lead-{i}".encode(), idx=str(i))
        got = _pull_all(subscriber, out_sub, n, timeout=40)
    finally:
        result.cancel()
    assert sorted(m.message.data for m in got) == sorted(f"LEAD-{i}".encode() for i in range(n))
    assert {m.message.attributes["idx"] for m in got} == {str(i) for i in range(n)}
    assert {m.message.attributes["stage"] for m in got} == {"beam"}
    assert _pull(subscriber, in_sub) == []  # the pipeline acked everything it read


def test_streaming_pull_half_close_and_cancel_do_not_leak_threads(monkeypatch):
    import grpc

    from infra.local.pubsub_emulator import serve
    from infra.local.pubsub_emulator.server import StreamingPullRequest, StreamingPullResponse

    def readers() -> int:
        return sum(t.name == "streaming-pull-reader" for t in threading.enumerate())

    emulator = serve(port=0)
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.address)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = _topic(publisher)
        sub = _sub(subscriber, topic)
        publisher.publish(topic, b"one").result(timeout=10)

        # half-close: the client sends its first request and ends its side; the server ends the stream
        with grpc.insecure_channel(emulator.address) as channel:
            call = channel.stream_stream(
                "/google.pubsub.v1.Subscriber/StreamingPull",
                request_serializer=StreamingPullRequest.SerializeToString,
                response_deserializer=StreamingPullResponse.FromString,
            )
            first = StreamingPullRequest(subscription=sub, stream_ack_deadline_seconds=10)
            responses = list(call(iter([first]), timeout=5))  # hangs -> DEADLINE_EXCEEDED if half-close is ignored
            assert sum(len(r.received_messages) for r in responses) <= 1

        # cancel: the official client opens and cancels streams
        for _ in range(3):
            future = subscriber.subscribe(sub, lambda m: m.ack())
            time.sleep(0.3)
            assert readers() >= 1
            future.cancel()
            future.result(timeout=10)
        give_up = time.monotonic() + 5
        while readers() and time.monotonic() < give_up:
            time.sleep(0.05)
        assert readers() == 0
        publisher.stop()
        subscriber.close()
    finally:
        emulator.stop()


def test_a_10_mb_message_is_pulled_once_the_emulator_message_limit_is_lifted(pubsub_emulator, monkeypatch):
    """Against the emulator the official client opens a channel with gRPC's 4 MiB receive limit (the production
    transport has none); Beam's DirectRunner pulls with that client, so one 10 MB message ended a local stream."""
    from google.pubsub_v1.services.publisher import client as publisher_module
    from google.pubsub_v1.services.subscriber import client as subscriber_module

    from infra.local.pubsub_emulator.client import lift_emulator_message_limit

    for module in (publisher_module, subscriber_module):
        monkeypatch.setattr(module, "grpc", module.grpc)  # restored after the test
    data = b"x" * 9_900_000  # just under Pub/Sub's 10 MB limit

    def pull_big() -> int:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = _topic(publisher)
        sub = _sub(subscriber, topic)
        publisher.publish(topic, data).result(timeout=30)
        try:
            response = subscriber.pull(subscription=sub, max_messages=10, timeout=30, retry=None)
            return len(response.received_messages[0].message.data)
        finally:
            subscriber.close()

    with pytest.raises(exceptions.ResourceExhausted, match="larger than max"):
        pull_big()
    assert lift_emulator_message_limit() is True
    assert lift_emulator_message_limit() is True  # idempotent
    assert pull_big() == len(data)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    assert lift_emulator_message_limit() is False


def test_the_direct_runner_reads_up_to_100_waiting_messages_with_the_local_speedups(pubsub_emulator, publisher,
                                                                                    subscriber):
    """Beam's DirectRunner pulls 10 messages a read; infra.local.direct lets a read take up to 100 already waiting."""
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator

    from infra.local import direct

    class Transform:  # the runner's cache key for a read step (weak-referenceable)
        pass

    topic = _topic(publisher)
    sub = _sub(subscriber, topic)
    for future in [publisher.publish(topic, f"m{i}".encode()) for i in range(150)]:
        future.result(timeout=30)

    steps = []  # the runner closes a step's client when the step is garbage-collected

    def read_once() -> int:
        steps.append(Transform())
        client = _PubSubReadEvaluator._get_subscriber_client(steps[-1])
        response = client.pull(subscription=sub, max_messages=10, timeout=30)  # exactly as the runner calls it
        client.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in response.received_messages])
        return len(response.received_messages)

    direct.restore()
    try:
        assert read_once() == 10
    finally:
        direct.speed_up_direct_runner()
    assert read_once() == direct.PULL_MAX_MESSAGES == 100
    assert read_once() == 40  # what is waiting; a read does not wait for more
