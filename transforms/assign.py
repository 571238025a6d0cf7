"""Enrich, route and assign: the Beam stage around ``transforms.enrich`` and ``transforms.routing``.

    scored leads --Enrich+Route--> (team, lead) --+                       +--> leads (with routing columns)
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
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp
from jsonschema import Draft202012Validator

from schemas.derive import json_schema
from schemas.records import AgentEventPayload, Lead
from transforms.enrich import enrichment
from transforms.messages import InputMessage, dead_letter, utcnow
from transforms.parsers.api import _FORMAT_CHECKER
from transforms.parsers.base import ParseError, load_json_object, parse_timestamp
from transforms.reference import ReferenceCache, ReferenceData, load_reference
from transforms.routing import (
    AGENT_STATUS,
    ASSIGNMENT,
    DELIVERY,
    LEAD,
    MANUAL_REVIEW,
    AgentEvent,
    TeamState,
    dispatch_lead,
    evolve,
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
    Beam falls back to pickling the Lead dataclass with its 40 field names (988 bytes, ~25 µs to encode and
    decode a typical lead); its values alone are 411 bytes and ~17 µs. Agent events are pickled as they are."""

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


class ReferenceConfig:
    """Where reference data comes from and how often it is reloaded (picklable; loads lazily)."""

    def __init__(self, location: str | None = None, source_registry: str | None = None,
                 refresh_seconds: float = 0.0, unverified_reliability: float = 0.3):
        self.location, self.source_registry = location, source_registry
        self.refresh_seconds, self.unverified_reliability = refresh_seconds, unverified_reliability

    def load(self, _=None) -> ReferenceData:
        return load_reference(self.location, self.source_registry)

    def cache(self) -> ReferenceCache:
        """The worker process's cache for this configuration, shared by every DoFn instance (runners may
        create instances per bundle; the data must not be reloaded for each)."""
        key = (self.location, self.source_registry, self.refresh_seconds)
        with _CACHES_LOCK:
            if key not in _CACHES:
                _CACHES[key] = ReferenceCache(self.location, self.source_registry, self.refresh_seconds)
            return _CACHES[key]


_CACHES: dict[tuple, ReferenceCache] = {}
_CACHES_LOCK = threading.Lock()


class ReferenceSideInput(beam.PTransform):
    """The reference data as a singleton side input.

    ``periodic=False``: loaded once (bounded runs). ``periodic=True``: the slowly-updating global-window
    side input: PeriodicImpulse every ``refresh_seconds`` reloads the tables and a per-element trigger
    publishes each new version (the pattern Dataflow serves; the DirectRunner's streaming mode cannot run
    PeriodicImpulse, so local streaming uses ``ReferenceCache`` in the workers instead)."""

    def __init__(self, config: ReferenceConfig, periodic: bool):
        super().__init__()
        self.config, self.periodic = config, periodic

    def expand(self, pbegin):
        if not self.periodic:
            return pbegin | "Once" >> beam.Impulse() | "Load" >> beam.Map(self.config.load)
        from apache_beam.transforms.periodicsequence import PeriodicImpulse

        return (
            pbegin
            | "Every" >> PeriodicImpulse(fire_interval=self.config.refresh_seconds)
            | "Load" >> beam.Map(self.config.load)
            | "Latest" >> beam.WindowInto(window.GlobalWindows(), trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                                          accumulation_mode=trigger.AccumulationMode.DISCARDING)
        )


class _WithReference(beam.DoFn):
    """Gets the reference data from the side input when there is one, else from a worker cache."""

    def __init__(self, config: ReferenceConfig):
        self.config = config
        self._cache: ReferenceCache | None = None

    def setup(self):
        self._cache = self.config.cache()

    def reference(self, side: ReferenceData | None) -> ReferenceData:
        return side if side is not None else self._cache.get()


class PrepareRoutingDoFn(_WithReference):
    """Scored lead -> enriched lead with territory and team, keyed by team; or manual review."""

    def __init__(self, config: ReferenceConfig, clock: Callable[[], float] | None):
        super().__init__(config)
        self.clock = clock
        self.manual = Metrics.counter("route", "manual_review")
        self.routed = Metrics.counter("route", "routed_to_team")

    def process(self, lead, ref=None):
        ref = self.reference(ref)
        # one copy of the lead with the enrichment and routing columns (the columns routing reads are not
        # enrichment columns, so this equals route_lead(ref, enrich_lead(lead, ...)) with one copy, not two)
        lead = evolve(lead, **enrichment(lead, ref, self.config.unverified_reliability), **routing_columns(ref, lead))
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


class ParseAgentEventsDoFn(_WithReference):
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
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(
                message_id=msg.message_id, data=msg.data, attributes=msg.attributes, publish_time=msg.publish_time,
                provider="agent_events", stage=AGENT_EVENT_STAGE, error_type=e.error_type, error_message=str(e)))
            return
        yield agent.team_id, ("agent", ev, ev.at)


def _tagged(outputs):
    for kind, record in outputs:
        yield beam.pvalue.TaggedOutput(kind, record)


class DispatchDoFn(_WithReference):
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


class DispatchGroupsDoFn(_WithReference):
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


class RouteAndAssign(beam.PTransform):
    """Scored leads (+ agent-event messages) -> tagged outputs: lead, delivery, manual_review,
    assignment, agent_status, dead_letters."""

    def __init__(self, config: ReferenceConfig, sla_seconds: float, streaming: bool, periodic_side_input: bool,
                 agent_messages: beam.PCollection | None = None, clock: Callable[[], float] | None = None):
        super().__init__()
        self.config, self.sla_seconds, self.streaming = config, sla_seconds, streaming
        self.periodic, self.clock, self.agent_messages = periodic_side_input, clock, agent_messages

    def expand(self, leads):
        agent_messages = self.agent_messages
        p = leads.pipeline
        side = {}
        if not self.streaming or self.periodic:
            ref = p | "Reference" >> ReferenceSideInput(self.config, periodic=self.periodic)
            side = {"ref": beam.pvalue.AsSingleton(ref)}
        clock = (self.clock or time.time) if self.streaming else None
        prepared = leads | "EnrichAndRoute" >> beam.ParDo(PrepareRoutingDoFn(self.config, clock), **side) \
            .with_output_types(tuple[str, RoutingItem]).with_outputs(*OUTPUTS, main="keyed")
        keyed = [prepared.keyed]
        dead = []
        if agent_messages is not None:
            events = agent_messages | "ParseAgentEvents" >> beam.ParDo(
                ParseAgentEventsDoFn(self.config), **side).with_output_types(tuple[str, RoutingItem]).with_outputs(
                DEAD_LETTERS, main="keyed")
            keyed.append(events.keyed)
            dead.append(events[DEAD_LETTERS])
        merged = keyed | "ByTeam" >> beam.Flatten() if len(keyed) > 1 else keyed[0]
        # without agent events nobody can accept, so assignments do not expire
        sla = self.sla_seconds if agent_messages is not None else None
        if self.streaming:
            dispatched = merged | "Dispatch" >> beam.ParDo(
                DispatchDoFn(self.config, sla, clock)).with_outputs(*OUTPUTS)
        else:
            dispatched = (
                merged
                | "GroupByTeam" >> beam.GroupByKey()
                | "Dispatch" >> beam.ParDo(DispatchGroupsDoFn(self.config, sla), **side)
                .with_outputs(*OUTPUTS)
            )
        out = {kind: (prepared[kind], dispatched[kind]) | f"All/{kind}" >> beam.Flatten() for kind in OUTPUTS}
        out[DEAD_LETTERS] = dead[0] if dead else None
        return out


def agent_event_json(event_id: str, agent_id: str, kind: str, at: datetime, lead_id: str | None = None) -> str:
    """An agent event as the JSON the pipeline accepts (demo, tests and tools)."""
    body = {"event_id": event_id, "agent_id": agent_id, "type": kind,
            "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if lead_id:
        body["lead_id"] = lead_id
    return json.dumps(body)
