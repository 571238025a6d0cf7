"""Throughput of the Pub/Sub emulator measured with the official ``google-cloud-pubsub`` client.

    python -m infra.local.pubsub_emulator.loadtest                       # starts its own emulator process
    python -m infra.local.pubsub_emulator.loadtest --address 127.0.0.1:8085 --messages 20000 --size 1024

Publishes N messages of ``--size`` bytes with a batching PublisherClient, then drains them twice: from one
subscription with synchronous Pull + Acknowledge, from another with StreamingPull (``subscriber.subscribe``) acking
in the callback. ``--push N`` adds a push phase: N more messages delivered by a push subscription to a local
HTTP endpoint (infra.local.crm_endpoint, answering 200), timed from the first publish to the last delivery.
Prints a table and one JSON line with msgs/s for each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from infra.local.processes import free_port, stop_process
from infra.local.pubsub_emulator.server import wait_ready

PROJECT = "loadtest"


def run(address: str, messages: int, size: int, batch: int) -> dict:
    os.environ["PUBSUB_EMULATOR_HOST"] = address
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1 import types

    admin = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    tag = uuid.uuid4().hex[:8]
    topic = admin.topic_path(PROJECT, f"load-{tag}")
    pull_sub = subscriber.subscription_path(PROJECT, f"load-pull-{tag}")
    stream_sub = subscriber.subscription_path(PROJECT, f"load-stream-{tag}")
    admin.create_topic(name=topic)
    for sub in (pull_sub, stream_sub):
        subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)

    publisher = pubsub_v1.PublisherClient(
        batch_settings=types.BatchSettings(max_messages=batch, max_bytes=9 * 1024 * 1024, max_latency=0.05)
    )
    payload = os.urandom(size // 2).hex().encode()[:size]
    started = time.perf_counter()
    futures = [publisher.publish(topic, payload, seq=str(i)) for i in range(messages)]
    for f in futures:
        f.result(timeout=120)
    publish_s = time.perf_counter() - started
    publisher.stop()

    started = time.perf_counter()
    pulled = 0
    while pulled < messages:
        response = subscriber.pull(subscription=pull_sub, max_messages=1000, timeout=30)
        ack_ids = [m.ack_id for m in response.received_messages]
        if ack_ids:
            subscriber.acknowledge(subscription=pull_sub, ack_ids=ack_ids)
        pulled += len(ack_ids)
    pull_s = time.perf_counter() - started

    count = 0
    lock = threading.Lock()
    done = threading.Event()

    def callback(message) -> None:
        nonlocal count
        message.ack()
        with lock:
            count += 1
            if count >= messages:
                done.set()

    started = time.perf_counter()
    future = subscriber.subscribe(
        stream_sub, callback, flow_control=types.FlowControl(max_messages=5000, max_bytes=256 * 1024 * 1024)
    )
    finished = done.wait(timeout=300)
    stream_s = time.perf_counter() - started
    future.cancel()
    future.result(timeout=30)
    if not finished:
        raise RuntimeError(f"streaming pull received only {count} of {messages} messages")

    for sub in (pull_sub, stream_sub):
        subscriber.delete_subscription(subscription=sub)
    admin.delete_topic(topic=topic)
    subscriber.close()
    admin.stop()
    return {
        "address": address,
        "messages": messages,
        "message_bytes": len(payload),
        "publish_batch_max_messages": batch,
        "publish_msgs_per_s": round(messages / publish_s),
        "pull_ack_msgs_per_s": round(messages / pull_s),
        "streaming_pull_ack_msgs_per_s": round(messages / stream_s),
        "publish_s": round(publish_s, 3),
        "pull_s": round(pull_s, 3),
        "streaming_pull_s": round(stream_s, 3),
    }


def push_rate(address: str, messages: int, size: int) -> dict:
    """Messages per second a push subscription delivers to a local endpoint that accepts everything."""
    os.environ["PUBSUB_EMULATOR_HOST"] = address
    from google.cloud import pubsub_v1

    from infra.local.crm_endpoint import CrmEndpoint

    admin, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    tag = uuid.uuid4().hex[:8]
    topic = admin.topic_path(PROJECT, f"push-{tag}")
    sub = subscriber.subscription_path(PROJECT, f"push-{tag}")
    admin.create_topic(name=topic)
    with CrmEndpoint({"load": 200}) as crm:
        subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 60,
                                                "push_config": {"push_endpoint": crm.url("load")}})
        payload = os.urandom(size // 2).hex().encode()[:size]
        started = time.perf_counter()
        for f in [admin.publish(topic, payload, seq=str(i)) for i in range(messages)]:
            f.result(timeout=120)
        give_up = time.monotonic() + 300
        while len({d.message_id for d in crm.received("load")}) < messages and time.monotonic() < give_up:
            time.sleep(0.05)
        push_s = time.perf_counter() - started
        delivered = len({d.message_id for d in crm.received("load")})
        pushes = len(crm.received("load"))
        subscriber.delete_subscription(subscription=sub)
    admin.delete_topic(topic=topic)
    subscriber.close()
    admin.stop()
    if delivered < messages:
        raise RuntimeError(f"push delivered only {delivered} of {messages} messages")
    return {"push_msgs_per_s": round(messages / push_s), "push_s": round(push_s, 3), "push_requests": pushes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.pubsub_emulator.loadtest", description=__doc__)
    parser.add_argument("--address", help="host:port of a running emulator (default: start one in a subprocess)")
    parser.add_argument("--messages", type=int, default=10_000, help="messages to publish (default 10000)")
    parser.add_argument("--size", type=int, default=1024, help="payload bytes per message (default 1024)")
    parser.add_argument("--batch", type=int, default=1000, help="publisher batch max_messages (default 1000)")
    parser.add_argument("--push", type=int, default=0, help="also time N messages pushed to a local endpoint")
    args = parser.parse_args(argv)

    proc = None
    address = args.address
    if address is None:
        address = f"127.0.0.1:{free_port()}"
        host, port = address.split(":")
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.local.pubsub_emulator", "--host", host, "--port", port,
             "--log-level", "WARNING"],
            cwd=Path(__file__).resolve().parents[3],
        )
    try:
        wait_ready(address, timeout=30)
        result = run(address, args.messages, args.size, args.batch)
        if args.push:
            result.update(push_rate(address, args.push, args.size))
    finally:
        if proc is not None:
            stop_process(proc, timeout=10)

    rows = [
        ("publish (batched)", result["publish_msgs_per_s"], result["publish_s"]),
        ("pull + acknowledge", result["pull_ack_msgs_per_s"], result["pull_s"]),
        ("streaming pull + ack", result["streaming_pull_ack_msgs_per_s"], result["streaming_pull_s"]),
    ]
    if args.push:
        rows.append((f"push ({args.push})", result["push_msgs_per_s"], result["push_s"]))
    print(f"{args.messages} messages of {result['message_bytes']} bytes against {address}")
    print(f"{'phase':<22} {'msgs/s':>10} {'seconds':>9}")
    for phase, rate, seconds in rows:
        print(f"{phase:<22} {rate:>10} {seconds:>9.2f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
