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
from datetime import UTC, datetime, timedelta
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


NIGHT = datetime(2026, 11, 18, 3, 0, tzinfo=UTC)  # Tuesday 22:00 in New York


class NightClock:
    def __call__(self) -> float:
        return NIGHT.timestamp()


@pytest.mark.slow
def test_a_lead_arriving_off_shift_is_offered_when_the_timer_reaches_the_shift(tmp_path):
    """us-east-sales without its 24/7 agent (left: Mon-Fri 08:00-20:00 and Mon-Sat 09:00-17:00): a lead at 22:00
    waits; the desk's processing-time timer wakes at the first shift start (08:00 New York) and offers it then,
    with its SLA from there (not at the queue limit, and not to manual review)."""
    src = Path(str(resources.files("transforms.reference_data")))
    ref = tmp_path / "ref"
    shutil.copytree(src, ref, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    agents = ref / "agents.csv"
    agents.write_text("\n".join(line for line in agents.read_text().splitlines() if not line.startswith("agt-use-1,"))
                      + "\n")
    opts = PipelineOptions([])
    opts.view_as(StandardOptions).streaming = True
    t = NIGHT.timestamp()
    stream = (
        TestStream().advance_watermark_to(t, tag="leads").advance_watermark_to(t, tag="agents")
        .advance_processing_time(t)
        .add_elements([TimestampedValue(lead_record("N1", state="NY", first_seen_at=NIGHT), t)], tag="leads")
        .add_elements([TimestampedValue(message(1, "agt-use-3", "online"), t)], tag="agents")
    )
    for _ in range(12):  # through the night, an hour at a time
        stream = stream.advance_processing_time(3600)
    stream = stream.advance_watermark_to_infinity(tag="leads").advance_watermark_to_infinity(tag="agents")
    name = f"desk-shift-{uuid.uuid4()}"
    p = TestPipeline(options=opts)
    inputs = p | stream
    config = RoutingConfig(ReferenceConfig(str(ref)), SLA, streaming=True, clock=NightClock(),
                           max_queue_seconds=MAX_QUEUE)
    out = {"leads": inputs["leads"], "agent_events": inputs["agents"]} | RouteAndAssign(config)
    out["assignment"] | "Steps" >> beam.Map(lambda a: (a.action, a.reason, a.agent_id, a.action_at, a.sla_deadline)) \
        | "RecordSteps" >> beam.Map(Record(name))
    p.run().wait_until_finish()
    steps = sorted(take(name), key=lambda s: (s[3], s[0] != "dequeued"))
    shift = datetime(2026, 11, 18, 13, 0, tzinfo=UTC)  # 08:00 New York: agt-use-2's shift starts
    assert [s[:3] for s in steps[:3]] == [("queued", "off_shift", None), ("dequeued", "agent_free", None),
                                          ("assigned", None, "agt-use-2")]
    assert steps[2][3] == shift and steps[2][4] == shift + timedelta(seconds=SLA)
    assert not [s for s in steps if s[0] == "manual_review" and s[3] < shift + timedelta(seconds=MAX_QUEUE)]
