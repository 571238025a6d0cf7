"""Route and assign: the Beam stage around ``transforms.routing``.

    enriched leads --ToTeam------> (team, lead) --+                       +--> leads (with routing columns)
                                                  +--> Dispatch per team -+--> deliveries (one per offer)
    agent events --Parse--------> (team, event) --+   (SLA timers)        +--> manual_review, lead_assignments,
                                                                          +--> agent_status
The dispatcher is keyed by **desk** (a team, or the teams linked by overflow), not by lead: re-assignment
and the waiting queue need the team's round-robin credit, who is away and who is at cap, and Beam state
cannot be shared across keys. Each desk key holds the offers awaiting acceptance, the accepted leads (open
until closed), the waiting queue, and one processing-time timer set to the next instant something falls due
(an SLA deadline, a queue limit, an overflow, a shift start while leads wait). See docs/routing.md.

* Streaming: ``DispatchDoFn`` (keyed state + a REAL_TIME timer; ``clock`` is injectable for TestStream).
* Bounded: ``DispatchGroupsDoFn`` replays each desk's leads and agent events in time order through the
  same pure functions, acting on what falls due between inputs at the instant it falls due (time = event
  time; what falls due after the desk's last input stays pending).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import operator
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp
from jsonschema import Draft202012Validator

from schemas.derive import evolve, json_schema
from schemas.records import AgentEventPayload, Lead, LeadEvent, LeadMerge
from transforms.enrich import ReferenceConfig, ReferenceDoFn, reference_side_inputs
from transforms.messages import InputMessage, dead_letter_for_message, utcnow
from transforms.parsers.api import _FORMAT_CHECKER
from transforms.parsers.base import ParseError, load_json_object, parse_timestamp
from transforms.routing import (
    AGENT_STATUS,
    ASSIGNMENT,
    DELIVERY,
    LEAD,
    MANUAL_REVIEW,
    AgentEvent,
    PersonEvent,
    Rules,
    TeamState,
    advance,
    dispatch_lead,
    manual_review,
    next_wake,
    on_agent_event,
    on_person_event,
    routing_columns,
)

_log = logging.getLogger(__name__)
OUTPUTS = (LEAD, DELIVERY, MANUAL_REVIEW, ASSIGNMENT, AGENT_STATUS)
AGENT_EVENT_VALIDATOR = Draft202012Validator(json_schema(AgentEventPayload), format_checker=_FORMAT_CHECKER)
DEAD_LETTERS = "dead_letters"
AGENT_EVENT_STAGE = "agent_event"


class RoutingItem:
    """Type hint of the dispatcher's keyed values ``(kind, item, at)``: ``("lead", Lead, datetime)`` or
    ``("agent", AgentEvent, datetime)``; it selects :class:`RoutingItemCoder` for them."""


class RoutingItemCoder(beam.coders.Coder):
    """The dispatcher's ``(kind, item, at)`` values, with a lead as the tuple of its field values.

    Every routed lead crosses the team GroupByKey (and the runner's stage boundaries) encoded. Without a hint
    Beam falls back to pickling the Lead dataclass with its 40 field names; its values alone are smaller and
    quicker to encode and decode (figures: docs/performance.md, "Profile: the routing stage"). Agent events are
    pickled as they are."""

    _FIELDS = tuple(f.name for f in dataclasses.fields(Lead))
    _values = staticmethod(operator.attrgetter(*_FIELDS))

    def encode(self, value) -> bytes:
        kind, item, at = value
        if kind == "lead" and type(item) is Lead:
            return pickle.dumps((None, self._values(item), at), pickle.HIGHEST_PROTOCOL)
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes):
        kind, item, at = pickle.loads(encoded)
        if kind is None:
            lead = object.__new__(Lead)
            lead.__dict__.update(zip(self._FIELDS, item, strict=True))
            return "lead", lead, at
        return kind, item, at

    def is_deterministic(self) -> bool:
        return False

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


beam.coders.registry.register_coder(RoutingItem, RoutingItemCoder)


class PrepareRoutingDoFn(ReferenceDoFn):
    """Enriched lead -> the lead with territory and team, keyed by team; or manual review."""

    def __init__(self, config: ReferenceConfig, clock: Callable[[], float] | None):
        super().__init__(config)
        self.clock = clock
        self.manual = Metrics.counter("route", "manual_review")
        self.routed = Metrics.counter("route", "routed_to_team")

    def process(self, lead, ref=None):
        ref = self.reference(ref)
        lead = evolve(lead, **routing_columns(ref, lead))
        at = lead.first_seen_at if self.clock is None else datetime.fromtimestamp(self.clock(), UTC)
        if lead.team is None:
            self.manual.inc()
            reason = "no_territory" if lead.territory is None else "no_team"
            for kind, record in manual_review(lead, reason, at, utcnow()):
                yield beam.pvalue.TaggedOutput(kind, record)
            return
        self.routed.inc()
        yield ref.desk(lead.team), ("lead", lead, at)


def agent_event_from_message(msg: InputMessage) -> AgentEvent:
    """Validate an agent-event message (JSON, AgentEventPayload schema) -> AgentEvent, or ParseError."""
    try:
        text = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("invalid_encoding", "agent event is not UTF-8") from None
    payload = load_json_object(text)
    errors = sorted(AGENT_EVENT_VALIDATOR.iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(f"{'.'.join(map(str, e.path)) or '(root)'}: {e.validator} failed" for e in errors[:10])
        raise ParseError("invalid_agent_event", f"agent event does not match the schema: {problems}")
    kind = payload["type"]
    if kind in ("accepted", "rejected", "closed") and not payload.get("lead_id"):
        raise ParseError("invalid_agent_event", f"a {kind} event needs lead_id")
    return AgentEvent(payload["event_id"], payload["agent_id"], kind,
                      parse_timestamp(payload["at"], field_name="at"), payload.get("lead_id"))


class ParseAgentEventsDoFn(ReferenceDoFn):
    """InputMessage -> (team of the agent, event); malformed or unknown-agent events are dead letters."""

    def __init__(self, config: ReferenceConfig):
        super().__init__(config)
        self.bad = Metrics.counter("agent_events", "dead_letters")

    def process(self, msg: InputMessage, ref=None):
        try:
            ev = agent_event_from_message(msg)
            agent = self.reference(ref).agent(ev.agent_id)
            if agent is None:
                raise ParseError("unknown_agent", "agent_id is not in the agents reference table")
        except ParseError as e:
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter_for_message(
                msg, stage=AGENT_EVENT_STAGE, error_type=e.error_type, error_message=str(e), provider="agent_events"))
            return
        yield self.reference(ref).desk(agent.team_id), ("agent", ev, ev.at)


OWNER_OUTCOMES = ("duplicate_same_source", "cross_source")  # later events of a known person


def update_record(e: LeadEvent) -> Lead:
    """A later event's facts as the record its owner is sent (a delivery of kind ``update``)."""
    return Lead(lead_id=e.lead_id, identity_key=e.identity_key, phone_e164=e.phone_e164, email=e.email,
                full_name=e.full_name, first_name=None, last_name=None, country=None, postal_code=None, city=None,
                state=None, property_address=None, message=None, primary_source=e.source_id,
                primary_provider=e.provider, first_seen_at=e.event_time, is_test=e.is_test,
                processed_at=e.processed_at)


class PersonEventsToDesksDoFn(ReferenceDoFn):
    """Later events of known persons and merges -> (desk, person event) for every desk: the event does not say
    which desk holds the person's lead, and only that desk acts on it (the others hold nothing for it)."""

    def process(self, record, ref=None):
        if isinstance(record, LeadMerge):
            pe = PersonEvent(f"merge:{record.merged_lead_id}:{record.event_id}", record.merged_lead_id,
                             record.merged_at, merged_into=record.into_lead_id)
        elif record.outcome in OWNER_OUTCOMES:
            pe = PersonEvent(record.event_id, record.lead_id, record.event_time, update_record(record))
        else:
            return
        for desk in self.reference(ref).all_desks():
            yield desk, ("person", pe, pe.at)


def _tagged(outputs):
    for kind, record in outputs:
        yield beam.pvalue.TaggedOutput(kind, record)


class QueueMetrics:
    """Queue length and oldest wait of a desk as Beam Metrics (gauges per desk, distributions over all)."""

    def __init__(self):
        self.length = Metrics.distribution("route", "queue_length")
        self.oldest = Metrics.distribution("route", "queue_oldest_wait_seconds")
        self.queued = Metrics.counter("route", "queued")

    def report(self, desk: str, state: TeamState, at: datetime, outputs) -> None:
        oldest = max(((at - (w.queued_at or w.since)).total_seconds() for w in state.queue.values()), default=0.0)
        self.length.update(len(state.queue))
        self.oldest.update(int(oldest))
        Metrics.gauge(f"route/{desk}", "queue_length").set(len(state.queue))
        Metrics.gauge(f"route/{desk}", "queue_oldest_wait_seconds").set(int(oldest))
        self.queued.inc(sum(1 for kind, r in outputs if kind == ASSIGNMENT and r.action == "queued"))


class DispatchDoFn(ReferenceDoFn):
    """Streaming dispatcher, keyed by desk: TeamState in keyed state; a processing-time timer at the next
    instant something falls due (SLA deadline, queue limit, overflow, shift start). ``clock`` (seconds since
    epoch) is the processing-time source: time.time normally, a test clock under TestStream (whose processing
    time starts at 0)."""

    TEAM = ReadModifyWriteStateSpec("team_state", beam.coders.PickleCoder())
    SLA = TimerSpec("sla", TimeDomain.REAL_TIME)

    def __init__(self, config: ReferenceConfig, rules: Rules, clock: Callable[[], float] = time.time):
        super().__init__(config)
        self.rules = rules
        self.clock = clock
        self.expired = Metrics.counter("assign", "sla_expired")
        self.queue_metrics = QueueMetrics()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _arm(self, ref, state: TeamState, timer) -> None:
        wake = next_wake(ref, state, self.rules)
        if wake is None:
            timer.clear()
        else:
            timer.set(Timestamp.from_utc_datetime(wake))

    def process(self, keyed, team_state=beam.DoFn.StateParam(TEAM), sla_timer=beam.DoFn.TimerParam(SLA)):
        desk, (kind, item, _at) = keyed
        ref, state, now = self.reference(None), team_state.read() or TeamState(), self._now()
        if kind == "lead":
            outputs = dispatch_lead(ref, state, item, now, now, self.rules)
        elif kind == "person":
            outputs = on_person_event(ref, state, item, now, now, self.rules)
        else:
            outputs = on_agent_event(ref, state, desk, item, now, self.rules, at=now)
        team_state.write(state)
        self._arm(ref, state, sla_timer)
        self.queue_metrics.report(desk, state, now, outputs)
        yield from _tagged(outputs)

    @on_timer(SLA)
    def on_sla(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
               team_state=beam.DoFn.StateParam(TEAM), sla_timer=beam.DoFn.TimerParam(SLA)):
        ref, state = self.reference(None), team_state.read() or TeamState()
        at = fired.to_utc_datetime(has_tz=True)
        outputs = advance(ref, state, at, self._now(), self.rules)
        self.expired.inc(sum(1 for kind, r in outputs if kind == ASSIGNMENT and r.action == "expired"))
        team_state.write(state)
        self._arm(ref, state, sla_timer)
        self.queue_metrics.report(key, state, at, outputs)
        yield from _tagged(outputs)


class DispatchGroupsDoFn(ReferenceDoFn):
    """Bounded dispatcher: one desk's leads and agent events, replayed in time order."""

    def __init__(self, config: ReferenceConfig, rules: Rules):
        super().__init__(config)
        self.rules = rules
        self.expired = Metrics.counter("assign", "sla_expired")
        self.queue_metrics = QueueMetrics()

    def process(self, grouped, ref=None):
        desk, items = grouped
        ref, state, now = self.reference(ref), TeamState(), utcnow()
        # leads before agent events at the same instant; then by lead id / event id for a deterministic order
        ordered = sorted(items, key=lambda x: (x[2], x[0] != "lead", x[1].lead_id if x[0] == "lead" else
                                               x[1].event_id))
        for kind, item, at in ordered:
            if kind == "lead":
                outputs = dispatch_lead(ref, state, item, at, now, self.rules)
            elif kind == "person":
                outputs = on_person_event(ref, state, item, at, now, self.rules)
            else:
                outputs = on_agent_event(ref, state, desk, item, now, self.rules)
            self.expired.inc(sum(1 for k, r in outputs if k == ASSIGNMENT and r.action == "expired"))
            self.queue_metrics.report(desk, state, at, outputs)
            yield from _tagged(outputs)


@dataclass(frozen=True)
class RoutingConfig:
    """Where reference data comes from, the acceptance SLA, the queue and overflow limits, the offers an agent
    may miss in a row, the mode, and (streaming) the processing-time clock: ``time.time`` normally, a test clock
    under TestStream (whose processing time starts at 0)."""

    reference: ReferenceConfig
    sla_seconds: float
    streaming: bool
    clock: Callable[[], float] | None = None
    max_queue_seconds: float = 900.0
    overflow_seconds: float | None = None
    max_missed_offers: int = 1
    waiting_queue: bool = True  # False, caps False: the rules before the queue and caps (leadflow simulate-desk)
    caps: bool = True

    def rules(self, with_agent_events: bool) -> Rules:
        """Without agent events nothing can accept, so offers do not expire and nothing waits."""
        return Rules(timedelta(seconds=self.sla_seconds) if with_agent_events else None,
                     timedelta(seconds=self.max_queue_seconds),
                     timedelta(seconds=self.overflow_seconds) if self.overflow_seconds is not None else None,
                     self.max_missed_offers, self.waiting_queue, self.caps)


class RouteAndAssign(beam.PTransform):
    """``{"leads": enriched leads, "agent_events": messages (optional), "person_events": LeadEvent and LeadMerge
    records (optional, with agent events: the owner first), "reference": reference data (optional)}``
    -> ``{lead, delivery, manual_review, assignment, agent_status, dead_letters}`` (dead_letters of the agent
    events; empty without them). Without a ``reference`` input the DoFns read it from their worker cache."""

    def __init__(self, config: RoutingConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        c, side = self.config, reference_side_inputs(inputs)
        clock = (c.clock or time.time) if c.streaming else None
        prepared = inputs["leads"] | "ToTeam" >> beam.ParDo(PrepareRoutingDoFn(c.reference, clock), **side) \
            .with_output_types(tuple[str, RoutingItem]).with_outputs(*OUTPUTS, main="keyed")
        if "agent_events" in inputs:
            events = inputs["agent_events"] | "ParseAgentEvents" >> beam.ParDo(
                ParseAgentEventsDoFn(c.reference), **side).with_output_types(tuple[str, RoutingItem]).with_outputs(
                DEAD_LETTERS, main="keyed")
            keyed = [prepared.keyed, events.keyed]
            if "person_events" in inputs:  # the owner first: later events of known persons, and merges
                keyed.append(inputs["person_events"] | "PersonEventsToDesks" >> beam.ParDo(
                    PersonEventsToDesksDoFn(c.reference), **side).with_output_types(tuple[str, RoutingItem]))
            merged = keyed | "ByTeam" >> beam.Flatten()
            dead = events[DEAD_LETTERS]
        else:  # nobody can accept, so assignments do not expire
            merged = prepared.keyed
            dead = inputs["leads"].pipeline | "NoAgentEvents" >> beam.Create([])
        rules = c.rules("agent_events" in inputs)
        if c.streaming:
            dispatched = merged | "Dispatch" >> beam.ParDo(DispatchDoFn(c.reference, rules, clock)).with_outputs(
                *OUTPUTS)
        else:
            dispatched = (
                merged
                | "GroupByTeam" >> beam.GroupByKey()
                | "Dispatch" >> beam.ParDo(DispatchGroupsDoFn(c.reference, rules), **side).with_outputs(*OUTPUTS)
            )
        out = {kind: (prepared[kind], dispatched[kind]) | f"All/{kind}" >> beam.Flatten() for kind in OUTPUTS}
        out[DEAD_LETTERS] = dead
        return out


def agent_event_json(event_id: str, agent_id: str, kind: str, at: datetime, lead_id: str | None = None) -> str:
    """An agent event as the JSON the pipeline accepts (demo, tests and tools)."""
    body = {"event_id": event_id, "agent_id": agent_id, "type": kind,
            "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if lead_id:
        body["lead_id"] = lead_id
    return json.dumps(body)
