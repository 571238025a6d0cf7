"""The streaming dispatcher under TestStream: an assignment that is not accepted expires when processing
time passes the SLA, goes to the next agent, and finally to manual review; an accepted one does not.
Processing time is TestStream's (it starts at 0), so the dispatcher's clock is a test clock."""

import json
import uuid
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.helpers.leads import lead_record
from tests.helpers.recorder import Record, take
from transforms.assign import RouteAndAssign, RoutingConfig
from transforms.enrich import ReferenceConfig
from transforms.messages import InputMessage

T0 = datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()  # Wednesday 10:00 in New York
SLA = 120


class FixedClock:
    """The dispatcher's 'now' for assignments (TestStream drives timers; this dates the offers)."""

    def __call__(self) -> float:
        return T0


def agent_message(event_id, agent, kind, lead_id=None):
    body = {"event_id": event_id, "agent_id": agent, "type": kind, "at": "2026-11-18T15:00:30Z"}
    if lead_id:
        body["lead_id"] = lead_id
    return InputMessage(f"m-{event_id}", json.dumps(body).encode(), {}, datetime.fromtimestamp(T0, UTC))


def test_sla_expiry_and_reassignment_with_processing_time_advances():
    opts = PipelineOptions([])
    opts.view_as(StandardOptions).streaming = True
    first_seen = datetime.fromtimestamp(T0, UTC)
    stream = (
        TestStream()
        .advance_watermark_to(T0, tag="leads").advance_watermark_to(T0, tag="agents")
        .add_elements([TimestampedValue(lead_record("L1", state="NY", first_seen_at=first_seen), T0)], tag="leads")
        .advance_processing_time(1)
        .add_elements([TimestampedValue(lead_record("L2", state="NY", first_seen_at=first_seen), T0)], tag="leads")
        .advance_processing_time(1)
        .add_elements([TimestampedValue(agent_message("a1", "agt-use-2", "accepted", "L2"), T0 + 30),
                       TimestampedValue(agent_message("bad", "agt-use-2", "teleported"), T0 + 30),
                       TimestampedValue(agent_message("x1", "agt-nobody", "online"), T0 + 30)], tag="agents")
        .advance_processing_time(T0)  # the TestStream clock reaches T0 + 2 s
        .advance_processing_time(SLA)  # ... and passes L1's first deadline (T0 + 120 s)
        .advance_processing_time(SLA)  # second offer expires
        .advance_processing_time(SLA)  # third offer expires: nobody left
        .advance_watermark_to_infinity(tag="leads").advance_watermark_to_infinity(tag="agents")
    )
    name = f"assign-{uuid.uuid4()}"
    p = TestPipeline(options=opts)
    inputs = p | stream
    config = RoutingConfig(ReferenceConfig(), SLA, streaming=True, clock=FixedClock())
    out = {"leads": inputs["leads"], "agent_events": inputs["agents"]} | RouteAndAssign(config)
    out["assignment"] | "Steps" >> beam.Map(lambda a: ("step", a.lead_id, a.action, a.attempt, a.agent_id)) \
        | "RecordSteps" >> beam.Map(Record(name))
    out["agent_status"] | "Status" >> beam.Map(lambda s: ("status", s.agent_id, s.status, s.reason)) \
        | "RecordStatus" >> beam.Map(Record(name))
    out["delivery"] | "Deliveries" >> beam.Map(lambda d: ("delivery", d.lead_id, d.agent_id)) \
        | "RecordDeliveries" >> beam.Map(Record(name))
    out["dead_letters"] | "Dead" >> beam.Map(lambda d: ("dead", d.message_id, d.error_type)) \
        | "RecordDead" >> beam.Map(Record(name))
    p.run().wait_until_finish()
    got = take(name)
    steps = sorted((r[1], r[3], r[2], r[4]) for r in got if r[0] == "step")
    assert steps == [
        ("L1", 1, "assigned", "agt-use-1"),
        ("L1", 1, "expired", "agt-use-1"),
        ("L1", 2, "expired", "agt-use-3"),  # smooth WRR: after use-1 and use-2, use-3 has the most credit
        ("L1", 2, "reassigned", "agt-use-3"),
        ("L1", 3, "expired", "agt-use-2"),
        ("L1", 3, "reassigned", "agt-use-2"),
        ("L1", 4, "manual_review", None),
        ("L2", 1, "accepted", "agt-use-2"),
        ("L2", 1, "assigned", "agt-use-2"),
    ]
    assert sorted(r[1:] for r in got if r[0] == "status") == [
        ("agt-use-1", "offline", "missed_offers"), ("agt-use-2", "offline", "missed_offers"),
        ("agt-use-3", "offline", "missed_offers")]
    assert sorted(r[1:] for r in got if r[0] == "delivery") == [
        ("L1", "agt-use-1"), ("L1", "agt-use-2"), ("L1", "agt-use-3"), ("L2", "agt-use-2")]
    assert sorted(r[1:] for r in got if r[0] == "dead") == [
        ("m-bad", "invalid_agent_event"), ("m-x1", "unknown_agent")]
