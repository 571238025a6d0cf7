"""Reference data refreshes while the stream runs: a streaming pipeline on the DirectRunner reads leads
from our Pub/Sub emulator and publishes deliveries carrying the territory; the territories table is
edited mid-stream; leads published after the refresh interval are routed by the new table, without a
restart."""

import json
import shutil
import threading
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.lead_pipeline import build
from pipelines.options import LeadflowOptions

pytestmark = pytest.mark.e2e
PROJECT = "refresh-test"


def api_lead(i: int) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"external_id": f"refresh-{i}", "phone": f"+1212555{i:04d}", "country": "US",
                       "state": "NY", "created_at": now}).encode()


def pull(subscriber, subscription: str, want: int, timeout: float) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        resp = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=10)
        if resp.received_messages:
            got.extend(resp.received_messages)
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": [m.ack_id for m in resp.received_messages]})
    return got


def test_changed_territory_table_takes_effect_mid_stream(pubsub_emulator, tmp_path):
    from google.cloud import pubsub_v1

    ref = tmp_path / "ref"
    shutil.copytree(Path(str(resources.files("transforms.reference_data"))), ref,
                    ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    names = {k: f"{k}-{int(time.time() * 1000)}" for k in ("leads", "deliveries")}
    topics = {k: publisher.create_topic(name=f"projects/{PROJECT}/topics/{v}").name for k, v in names.items()}
    subs = {k: subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/{v}", topic=topics[k]).name
            for k, v in names.items()}
    options = PipelineOptions([
        "--streaming", f"--input_subscription={subs['leads']}", f"--delivery_topic={topics['deliveries']}",
        f"--reference_data={ref}", "--reference_refresh_seconds=1", "--identity_store=memory"])
    p = beam.Pipeline(options=options)
    build(p, options.view_as(LeadflowOptions))
    result = p.run()
    watcher = threading.Thread(target=result.wait_until_finish, daemon=True)
    watcher.start()
    try:
        for i in range(3):
            publisher.publish(topics["leads"], api_lead(i), provider="api").result(timeout=30)
        before = pull(subscriber, subs["deliveries"], 3, timeout=120)
        assert [m.message.attributes["territory"] for m in before] == ["us-east"] * 3
        assert {m.message.attributes["team"] for m in before} == {"us-east-sales"}

        territories = ref / "territories.csv"  # New York moves from us-east to us-central
        text = territories.read_text()
        territories.write_text(text.replace(",NY;NJ;", ",NJ;").replace(",IL;TX;", ",NY;IL;TX;"))
        time.sleep(2.5)  # past the refresh interval
        for i in range(3, 6):
            publisher.publish(topics["leads"], api_lead(i), provider="api").result(timeout=30)
        after = pull(subscriber, subs["deliveries"], 3, timeout=120)
        assert [m.message.attributes["territory"] for m in after] == ["us-central"] * 3
        assert {m.message.attributes["team"] for m in after} == {"us-central-sales"}
        assert {m.message.attributes["agent"] for m in after} <= {"agt-usc-1", "agt-usc-2"}
    finally:
        result.cancel()
        publisher.stop()
        subscriber.close()
