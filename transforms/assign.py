"""Route and assign: the Beam stage around ``transforms.routing``.

    enriched leads --ToTeam------> (team, lead) --+                       +--> leads (with routing columns)
                                                  +--> Dispatch per team -+--> deliveries (one per offer)
    agent events --Parse--------> (team, event) --+   (SLA timers)        +--> manual_review, lead_assignments,
                                                                          +--> agent_status
The dispatcher is keyed by **team**, not by lead: re-assignment needs the team's round-robin weights and
who is away, and Beam state cannot be shared across keys. Each team key holds the leads awaiting
acceptance, each with its own deadline, and one processing-time timer set to the earliest deadline.

* Streaming: ``DispatchDoFn`` (keyed state + a REAL_TIME timer; ``clock`` is injectable for TestStream).
* Bounded: ``DispatchGroupsDoFn`` replays each team's leads and agent events in time order through the
  same pure functions, expiring assignments between events (time = event time; deadlines after the
  team's last input stay pending).
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
from schemas.records import AgentEventPayload, Lead
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
    TeamState,
    dispatch_lead,
    expire,
    manual_review,
    on_agent_event,
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
        yield lead.team, ("lead", lead, at)


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
    if kind in ("accepted", "rejected") and not payload.get("lead_id"):
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
        yield agent.team_id, ("agent", ev, ev.at)


def _tagged(outputs):
    for kind, record in outputs:
        yield beam.pvalue.TaggedOutput(kind, record)


class DispatchDoFn(ReferenceDoFn):
    """Streaming dispatcher, keyed by team: TeamState in keyed state; a processing-time timer at the
    earliest SLA deadline expires and re-assigns. ``clock`` (seconds since epoch) is the processing-time
    source: time.time normally, a test clock under TestStream (whose processing time starts at 0)."""

    TEAM = ReadModifyWriteStateSpec("team_state", beam.coders.PickleCoder())
    SLA = TimerSpec("sla", TimeDomain.REAL_TIME)

    def __init__(self, config: ReferenceConfig, sla_seconds: float | None, clock: Callable[[], float] = time.time):
        super().__init__(config)
        self.sla = timedelta(seconds=sla_seconds) if sla_seconds is not None else None
        self.clock = clock
        self.expired = Metrics.counter("assign", "sla_expired")

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _arm(self, state: TeamState, timer) -> None:
        deadline = state.next_deadline()
        if deadline is None:
            timer.clear()
        else:
            timer.set(Timestamp.from_utc_datetime(deadline))

    def process(self, keyed, team_state=beam.DoFn.StateParam(TEAM), sla_timer=beam.DoFn.TimerParam(SLA)):
        team, (kind, item, _at) = keyed
        ref, state, now = self.reference(None), team_state.read() or TeamState(), self._now()
        if kind == "lead":
            outputs = dispatch_lead(ref, state, item, now, now, self.sla)
        else:
            outputs = on_agent_event(ref, state, team, item, now, self.sla)
        team_state.write(state)
        self._arm(state, sla_timer)
        yield from _tagged(outputs)

    @on_timer(SLA)
    def on_sla(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
               team_state=beam.DoFn.StateParam(TEAM), sla_timer=beam.DoFn.TimerParam(SLA)):
        state = team_state.read() or TeamState()
        at = fired.to_utc_datetime(has_tz=True)
        outputs = expire(self.reference(None), state, key, at, self._now(), self.sla)
        self.expired.inc(sum(1 for kind, r in outputs if kind == ASSIGNMENT and r.action == "expired"))
        team_state.write(state)
        self._arm(state, sla_timer)
        yield from _tagged(outputs)


class DispatchGroupsDoFn(ReferenceDoFn):
    """Bounded dispatcher: one team's leads and agent events, replayed in time order."""

    def __init__(self, config: ReferenceConfig, sla_seconds: float | None):
        super().__init__(config)
        self.sla = timedelta(seconds=sla_seconds) if sla_seconds is not None else None

    def process(self, grouped, ref=None):
        team, items = grouped
        ref, state, now = self.reference(ref), TeamState(), utcnow()
        # leads before agent events at the same instant; then by id for a deterministic order
        ordered = sorted(items, key=lambda x: (x[2], x[0] != "lead", getattr(x[1], "lead_id", None) or
                                               getattr(x[1], "event_id", "")))
        for kind, item, at in ordered:
            yield from _tagged(expire(ref, state, team, at, now, self.sla))
            if kind == "lead":
                yield from _tagged(dispatch_lead(ref, state, item, at, now, self.sla))
            else:
                yield from _tagged(on_agent_event(ref, state, team, item, now, self.sla))


@dataclass(frozen=True)
class RoutingConfig:
    """Where reference data comes from, the acceptance SLA, the mode, and (streaming) the processing-time clock:
    ``time.time`` normally, a test clock under TestStream (whose processing time starts at 0)."""

    reference: ReferenceConfig
    sla_seconds: float
    streaming: bool
    clock: Callable[[], float] | None = None


class RouteAndAssign(beam.PTransform):
    """``{"leads": enriched leads, "agent_events": messages (optional), "reference": reference data (optional)}``
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
            merged = (prepared.keyed, events.keyed) | "ByTeam" >> beam.Flatten()
            dead, sla = events[DEAD_LETTERS], c.sla_seconds
        else:  # nobody can accept, so assignments do not expire
            merged, sla = prepared.keyed, None
            dead = inputs["leads"].pipeline | "NoAgentEvents" >> beam.Create([])
        if c.streaming:
            dispatched = merged | "Dispatch" >> beam.ParDo(DispatchDoFn(c.reference, sla, clock)).with_outputs(*OUTPUTS)
        else:
            dispatched = (
                merged
                | "GroupByTeam" >> beam.GroupByKey()
                | "Dispatch" >> beam.ParDo(DispatchGroupsDoFn(c.reference, sla), **side).with_outputs(*OUTPUTS)
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
