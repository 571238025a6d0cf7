"""Dedup stage: recognise the same person across messages and providers.

Keyed by identity (``phone:<E.164>``, else ``email:<address>``), a stateful DoFn decides each
event's outcome:

- ``new``: the first sighting of the person: creates the lead (``leads`` row) and its primary
  ``lead_source_history`` row.
- ``replay``: the same unit (message id) again, or the same provider external id again: no new facts.
- ``duplicate_same_source``: a source that already sent this person sends them again.
- ``cross_source``: another source sends a known person: a ``lead_source_history`` row with
  ``is_primary=false``.

Out-of-order arrivals: an event is held in state until the watermark passes its timestamp plus
``hold`` (an event-time timer); then every event held for the person is decided in order of the
provider's event time, so the primary source is the earliest one even when it arrives last within
the hold. An
event arriving after that (late data) is decided against the state as it stands: it never creates
a second lead for a known person.

Expiry: a person whose newest event is more than ``ttl`` older than the next one is forgotten, and
becomes a new lead. In streaming an event-time timer ``ttl`` after the newest event clears the
state, so state stays bounded.

Two executions of the same decision function (``decide_all``): a bounded input has all its data
before any decision, so it groups each person's events (GroupByKey) and decides them in event-time
order at once; an unbounded input uses the stateful DoFn with its hold and expiry timers. On the
same complete input both give the same outcomes (tested).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.records import Lead, LeadEvent, SourceHistory
from transforms.messages import utcnow
from transforms.normalize import NormalizedLead

NEW, DUPLICATE_SAME_SOURCE, CROSS_SOURCE, REPLAY = "new", "duplicate_same_source", "cross_source", "replay"
OUTCOMES = (NEW, DUPLICATE_SAME_SOURCE, CROSS_SOURCE, REPLAY)

# Ids are uuid5 in this namespace, so reruns over the same input produce the same ids.
LEADFLOW_NAMESPACE = uuid.UUID("6f1c1f6e-5b1a-4f39-9a43-0c5e2b8d7a10")
# Bounds on per-person memory of ids (most recent kept); a person repeating more is still recognised.
MAX_REMEMBERED_IDS = 500
DEFAULT_TTL = timedelta(days=90)


def event_id_for(unit_id: str, redelivery: int = 0) -> str:
    name = unit_id if redelivery == 0 else f"{unit_id}#redelivery{redelivery}"
    return str(uuid.uuid5(LEADFLOW_NAMESPACE, "event:" + name))


def lead_id_for(identity_key: str, first_event_id: str) -> str:
    return str(uuid.uuid5(LEADFLOW_NAMESPACE, f"lead:{identity_key}:{first_event_id}"))


@dataclass
class PersonState:
    """What the dedup stage remembers about one person (bounded by MAX_REMEMBERED_IDS)."""

    lead_id: str
    primary_source: str
    first_seen_at: datetime
    newest_publish: datetime
    sources: set[str] = field(default_factory=set)
    unit_ids: dict[str, int] = field(default_factory=dict)  # unit id -> times seen
    external_ids: dict[tuple[str, str], None] = field(default_factory=dict)  # insertion-ordered set

    def remember(self, lead: NormalizedLead) -> None:
        self.unit_ids[lead.unit_id] = self.unit_ids.get(lead.unit_id, 0) + 1
        if lead.external_id:
            self.external_ids[(lead.provider, lead.external_id)] = None
        for ids in (self.unit_ids, self.external_ids):
            while len(ids) > MAX_REMEMBERED_IDS:
                del ids[next(iter(ids))]


@dataclass
class Decision:
    outcome: str
    event: LeadEvent
    lead: Lead | None = None
    history: SourceHistory | None = None


def sort_key(lead: NormalizedLead) -> tuple:
    """Decision order within a hold: provider event time, then arrival, then id (deterministic)."""
    return (lead.event_time, lead.publish_time, lead.unit_id)


def decide(
    state: PersonState | None, lead: NormalizedLead, ttl: timedelta = DEFAULT_TTL
) -> tuple[PersonState, Decision]:
    """The pure dedup decision for one event given the person's state (which it updates)."""
    now = utcnow()
    if state is not None and lead.publish_time - state.newest_publish > ttl:
        state = None  # expired: the person is new again
    if state is None:
        event_id = event_id_for(lead.unit_id)
        lead_id = lead_id_for(lead.identity_key, event_id)
        state = PersonState(lead_id=lead_id, primary_source=lead.source_id, first_seen_at=lead.event_time,
                            newest_publish=lead.publish_time)
        outcome = NEW
    elif lead.unit_id in state.unit_ids:
        event_id = event_id_for(lead.unit_id, state.unit_ids[lead.unit_id])
        outcome = REPLAY
    else:
        event_id = event_id_for(lead.unit_id)
        if lead.external_id and (lead.provider, lead.external_id) in state.external_ids:
            outcome = REPLAY
        elif lead.source_id in state.sources:
            outcome = DUPLICATE_SAME_SOURCE
        else:
            outcome = CROSS_SOURCE
    state.remember(lead)
    state.sources.add(lead.source_id)
    state.newest_publish = max(state.newest_publish, lead.publish_time)
    event = LeadEvent(
        event_id=event_id, message_id=lead.unit_id, lead_id=state.lead_id, outcome=outcome,
        provider=lead.provider, source_id=lead.source_id, source_verified=lead.source_verified,
        external_id=lead.external_id, identity_key=lead.identity_key, event_time=lead.event_time,
        publish_time=lead.publish_time, phone_e164=lead.phone_e164, email=lead.email,
        full_name=lead.full_name, is_test=lead.is_test, campaign_id=lead.campaign_id, form_id=lead.form_id,
        processed_at=now,
    )
    decision = Decision(outcome, event)
    if outcome in (NEW, CROSS_SOURCE):
        decision.history = SourceHistory(
            lead_id=state.lead_id, source_id=lead.source_id, provider=lead.provider,
            external_id=lead.external_id, is_primary=outcome == NEW, event_id=event_id,
            received_at=lead.event_time,
        )
    if outcome == NEW:
        decision.lead = Lead(
            lead_id=state.lead_id, identity_key=lead.identity_key, phone_e164=lead.phone_e164, email=lead.email,
            full_name=lead.full_name, first_name=lead.first_name, last_name=lead.last_name, country=lead.country,
            postal_code=lead.postal_code, city=lead.city, state=lead.state,
            property_address=lead.property_address, message=lead.message, primary_source=lead.source_id,
            primary_provider=lead.provider, first_seen_at=lead.event_time, is_test=lead.is_test, processed_at=now,
        )
    return state, decision


def decide_all(
    state: PersonState | None, leads: Iterable[NormalizedLead], ttl: timedelta = DEFAULT_TTL
) -> tuple[PersonState | None, list[Decision]]:
    """Decide a batch of held events in event-time order."""
    decisions = []
    for lead in sorted(leads, key=sort_key):
        state, decision = decide(state, lead, ttl)
        decisions.append(decision)
    return state, decisions


class DedupDoFn(beam.DoFn):
    """Stateful per-person dedup. Input: (identity_key, NormalizedLead). Outputs: LeadEvent (main),
    Lead (``leads``), SourceHistory (``history``), each timestamped like the input event."""

    LEADS, HISTORY = "leads", "history"

    HELD = BagStateSpec("held", PickleCoder())  # NormalizedLead waiting for the hold to pass
    PERSON = ReadModifyWriteStateSpec("person", PickleCoder())
    FLUSH_AT = ReadModifyWriteStateSpec("flush_at", PickleCoder())  # micros of the pending flush timer
    NEWEST = ReadModifyWriteStateSpec("newest", PickleCoder())  # micros of the newest event seen
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    EXPIRE = TimerSpec("expire", TimeDomain.WATERMARK)

    def __init__(self, hold_seconds: float, ttl_days: float):
        self.hold = Duration(seconds=hold_seconds)
        self.ttl = Duration(seconds=ttl_days * 86400)
        self.ttl_delta = timedelta(days=ttl_days)
        self.counters = {o: Metrics.counter("dedup", o) for o in OUTCOMES}
        self.expired = Metrics.counter("dedup", "expired_keys")

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        held=beam.DoFn.StateParam(HELD),
        flush_at=beam.DoFn.StateParam(FLUSH_AT),
        newest=beam.DoFn.StateParam(NEWEST),
        flush=beam.DoFn.TimerParam(FLUSH),
        expire=beam.DoFn.TimerParam(EXPIRE),
    ):
        _, lead = element
        held.add(lead)
        due = timestamp + self.hold
        pending = flush_at.read()
        if pending is None or due.micros < pending:
            flush.set(due)
            flush_at.write(due.micros)
        newest_micros = newest.read()
        if newest_micros is None or timestamp.micros > newest_micros:
            newest.write(timestamp.micros)
            expire.set(timestamp + self.ttl)

    @on_timer(FLUSH)
    def on_flush(
        self,
        held=beam.DoFn.StateParam(HELD),
        person=beam.DoFn.StateParam(PERSON),
        flush_at=beam.DoFn.StateParam(FLUSH_AT),
    ):
        # Everything held is decided together: events that arrived within the hold of the first.
        entries = list(held.read())
        held.clear()
        flush_at.clear()
        yield from self._decide(person, entries)

    @on_timer(EXPIRE)
    def on_expire(
        self,
        held=beam.DoFn.StateParam(HELD),
        person=beam.DoFn.StateParam(PERSON),
        flush_at=beam.DoFn.StateParam(FLUSH_AT),
        newest=beam.DoFn.StateParam(NEWEST),
    ):
        # Anything still held is decided first (at the end of a bounded input both timers fire).
        entries = list(held.read())
        yield from self._decide(person, entries)
        for s in (held, person, flush_at, newest):
            s.clear()
        self.expired.inc()

    def _decide(self, person, entries):
        if not entries:
            return
        state, decisions = decide_all(person.read(), entries, self.ttl_delta)
        person.write(state)
        yield from emit(decisions, self.counters)


def emit(decisions: list[Decision], counters) -> Iterable:
    """Decisions as the DoFn outputs, each stamped with its event's publish time."""
    for d in decisions:
        ts = Timestamp.from_utc_datetime(d.event.publish_time)
        counters[d.outcome].inc()
        yield beam.window.TimestampedValue(d.event, ts)
        if d.lead is not None:
            yield beam.pvalue.TaggedOutput(DedupDoFn.LEADS, beam.window.TimestampedValue(d.lead, ts))
        if d.history is not None:
            yield beam.pvalue.TaggedOutput(DedupDoFn.HISTORY, beam.window.TimestampedValue(d.history, ts))


class DecideGroupDoFn(beam.DoFn):
    """Bounded execution: (identity_key, all events of the person) -> the same outputs as DedupDoFn."""

    def __init__(self, ttl_days: float):
        self.ttl_delta = timedelta(days=ttl_days)
        self.counters = {o: Metrics.counter("dedup", o) for o in OUTCOMES}

    def process(self, element):
        _, leads = element
        _, decisions = decide_all(None, leads, self.ttl_delta)
        yield from emit(decisions, self.counters)


@dataclass(frozen=True)
class DedupConfig:
    """How long a new person's first events are held for attribution, and how long a person is remembered."""

    hold_seconds: float = 60.0
    ttl_days: float = 90.0


class DeduplicatePersons(beam.PTransform):
    """NormalizedLead -> LeadEvent (main ``events``), Lead (``leads``), SourceHistory (``history``)."""

    def __init__(self, config: DedupConfig = DedupConfig()):
        super().__init__()
        self.hold_seconds = config.hold_seconds
        self.ttl_days = config.ttl_days

    def expand(self, leads):
        keyed = leads | "KeyByIdentity" >> beam.Map(lambda lead: (lead.identity_key, lead)).with_output_types(
            beam.typehints.KV[str, NormalizedLead])
        if leads.is_bounded:
            decide_fn = DecideGroupDoFn(self.ttl_days)
            keyed = keyed | "GroupPerPerson" >> beam.GroupByKey()
        else:
            decide_fn = DedupDoFn(self.hold_seconds, self.ttl_days)
        return keyed | "DecidePerPerson" >> beam.ParDo(decide_fn).with_outputs(
            DedupDoFn.LEADS, DedupDoFn.HISTORY, main="events"
        )
