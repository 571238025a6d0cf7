"""The desk rules as a pipeline: the streaming dispatcher under a processing-time TestStream and the bounded one
reach the same decisions on the same inputs (queue, caps, closing, expiry, missed offers, queue limit), and over
a long run no offer takes an agent past its cap.

Every input is dated T0 and the streaming clock stands at T0 (TestStream's processing time drives only the
timers), so both modes see the same instants: leads first, then agent events, then the deadlines."""

import json
import random
import shutil
import uuid
from collections import Counter
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.helpers.leads import lead_record
from tests.helpers.recorder import Record, take
from transforms.assign import RouteAndAssign, RoutingConfig, agent_event_json
from transforms.enrich import ReferenceConfig
from transforms.messages import InputMessage
from transforms.reference import load_reference
from transforms.routing import AgentEvent, TeamState, dispatch_lead, on_agent_event, route_lead

T0 = datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()  # Wednesday 10:00 in New York
START = datetime.fromtimestamp(T0, UTC)
SLA, MAX_QUEUE = 120, 900
CAPS = {"agt-use-1": 2, "agt-use-2": 1, "agt-use-3": 1}


class FixedClock:
    def __call__(self) -> float:
        return T0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """The bundled reference data with small caps for us-east-sales."""
    src = Path(str(resources.files("transforms.reference_data")))
    dst = tmp_path_factory.mktemp("ref") / "ref"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    agents = dst / "agents.csv"
    lines = agents.read_text().splitlines()
    out = [lines[0]] + [",".join([*line.split(",")[:-1], str(CAPS[line.split(",")[0]])]) if line.split(",")[0] in CAPS
                        else line for line in lines[1:]]
    agents.write_text("\n".join(out) + "\n")
    return str(dst)


def message(i: int, agent: str, kind: str, lead_id: str | None = None) -> InputMessage:
    return InputMessage(f"m-{i:04d}", agent_event_json(f"e-{i:04d}", agent, kind, START, lead_id).encode(), {}, START)


def scenario(reference: str, seed: int, n_leads: int, n_events: int):
    """Leads for us-east-sales, and agent events that answer what the desk holds at that point (accept or reject
    an offer, close an accepted lead, go away, come back), chosen by playing the pure dispatcher along."""
    rng = random.Random(seed)
    ref, state, rules = load_reference(reference), TeamState(), RoutingConfig(None, SLA, False).rules(True)
    leads = [route_lead(ref, lead_record(f"L{i:03d}", state="NY", first_seen_at=START,
                                         priority_tier=rng.choice(["hot", "cold"]))) for i in range(n_leads)]
    for lead in leads:
        dispatch_lead(ref, state, lead, START, START, rules)
    events = []
    for i in range(n_events):
        offers = sorted((p.agent_id, lid) for lid, p in state.pending.items())
        held = sorted((agent, lid) for lid, (agent, *_) in state.accepted.items())
        roll = rng.random()
        if roll < 0.4 and offers:
            (agent, lid), kind = rng.choice(offers), rng.choice(["accepted", "accepted", "accepted", "rejected"])
        elif roll < 0.8 and held:
            (agent, lid), kind = rng.choice(held), "closed"
        else:
            agent, lid, kind = rng.choice(list(CAPS)), None, rng.choice(["away", "online"])
        events.append(message(i, agent, kind, lid))
        on_agent_event(ref, state, "us-east-sales", AgentEvent(f"e-{i:04d}", agent, kind, START, lid), START, rules)
    return leads, events


def record(out, name):
    out["assignment"] | "Steps" >> beam.Map(lambda a: ("step", a.lead_id, a.action, a.attempt, a.agent_id,
                                                       a.reason, a.decision)) \
        | "RecordSteps" >> beam.Map(Record(name))
    out["agent_status"] | "Status" >> beam.Map(lambda s: ("status", s.agent_id, s.status, s.reason)) \
        | "RecordStatus" >> beam.Map(Record(name))


def run_streaming(reference, leads, events) -> list:
    opts = PipelineOptions([])
    opts.view_as(StandardOptions).streaming = True
    stream = TestStream().advance_watermark_to(T0, tag="leads").advance_watermark_to(T0, tag="agents")
    stream = stream.advance_processing_time(T0)
    for lead in leads:  # one at a time: the order the bounded run sorts them in (by id at one instant)
        stream = stream.add_elements([TimestampedValue(lead, T0)], tag="leads").advance_processing_time(0.001)
    for ev in events:
        stream = stream.add_elements([TimestampedValue(ev, T0)], tag="agents").advance_processing_time(0.001)
    for _ in range(12):  # past every SLA deadline and the queue limit, a little at a time
        stream = stream.advance_processing_time(SLA)
    stream = stream.advance_watermark_to_infinity(tag="leads").advance_watermark_to_infinity(tag="agents")
    name = f"desk-stream-{uuid.uuid4()}"
    p = TestPipeline(options=opts)
    inputs = p | stream
    config = RoutingConfig(ReferenceConfig(reference), SLA, streaming=True, clock=FixedClock(),
                           max_queue_seconds=MAX_QUEUE, max_missed_offers=2)
    record({"leads": inputs["leads"], "agent_events": inputs["agents"]} | RouteAndAssign(config), name)
    p.run().wait_until_finish()
    return take(name)


def run_bounded(reference, leads, events) -> list:
    """The bounded run; a last event an hour later (closing a lead nobody holds: recorded and ignored) carries it
    past every deadline, as the streaming run's processing time does."""
    late = datetime.fromtimestamp(T0 + 3600, UTC)
    tail = InputMessage("m-tail", agent_event_json("e-tail", "agt-use-1", "closed", late, "tail").encode(), {}, late)
    name = f"desk-bounded-{uuid.uuid4()}"
    p = TestPipeline()
    config = RoutingConfig(ReferenceConfig(reference), SLA, streaming=False, max_queue_seconds=MAX_QUEUE,
                           max_missed_offers=2)
    record({"leads": p | "Leads" >> beam.Create(leads), "agent_events": p | "Events" >> beam.Create([*events, tail])}
           | RouteAndAssign(config), name)
    result = p.run()
    result.wait_until_finish()
    rows = take(name)
    QUEUE_METRICS.update({m.key.metric.name: m.committed for m in result.metrics().query(
        MetricsFilter().with_namespace("route"))["distributions"]})
    assert [r[2:6] for r in rows if r[1] == "tail"] == [("ignored", 0, "agt-use-1", "unknown_lead")]
    return [r for r in rows if r[1] != "tail"]


QUEUE_METRICS: dict = {}  # the bounded run's queue distributions (Beam Metrics)


def decisions(rows) -> Counter:
    """What was decided, without the instants (the streaming clock is fixed)."""
    return Counter(r[:6] for r in rows)


@pytest.mark.slow
def test_streaming_and_bounded_runs_agree_and_never_pass_a_cap(reference):
    leads, events = scenario(reference, 5, 40, 150)
    streaming, bounded = run_streaming(reference, leads, events), run_bounded(reference, leads, events)
    assert decisions(streaming) == decisions(bounded)
    actions = Counter(r[2] for r in streaming if r[0] == "step")
    for action in ("assigned", "queued", "dequeued", "accepted", "closed", "expired", "reassigned", "manual_review"):
        assert actions[action] > 0, (action, actions)
    offers = [json.loads(r[6]) for r in streaming if r[0] == "step" and r[2] in ("assigned", "reassigned")]
    assert all(d["open_before"] < d["max_open"] == CAPS[d["chosen"]] for d in offers)
    assert any(s["reason"] == "at_cap" for r in streaming if r[0] == "step" and r[6]
               for s in json.loads(r[6]).get("skipped", []))
    assert {r[3] for r in streaming if r[0] == "status"} <= {"missed_offers", "agent_event"}
    # queue length and oldest wait are Beam Metrics (distributions over every dispatcher step)
    assert QUEUE_METRICS["queue_length"].max >= 1 and QUEUE_METRICS["queue_length"].count > 0
    assert QUEUE_METRICS["queue_oldest_wait_seconds"].count == QUEUE_METRICS["queue_length"].count
