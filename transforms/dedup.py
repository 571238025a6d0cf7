"""Dedup stage: which person each event belongs to, decided on arrival (``transforms.identity``).

Outcomes: ``new`` (creates the lead: a ``leads`` row and its primary ``lead_source_history`` row),
``duplicate_same_source``, ``cross_source`` (a ``lead_source_history`` row), ``replay`` (the same unit again,
or a provider id already seen: no new facts); a unit of a person erased on request (``leadflow forget``) is an
``identity/erased_person`` dead letter instead (``dead_letters``, no personal data). Beside them: ``lead_merges``,
``lead_versions`` (created, new_source, merged, merged_into, primary_corrected) and ``identifier_guards``.

One key: a merge touches two persons and a Beam graph has no cycles, so every decision goes through one
stateful DoFn key (the single writer of the identity store; docs/identity.md compares the alternatives).
Its Beam state is only the fence ``(epoch, committed generation)``: Beam commits it with the outputs, so the
resolver can tell a retried attempt from a redelivery. Bounded input: all events of the run are decided in
event-time order (so no correction is needed), the same decisions as any arrival order ends in.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Timestamp

from transforms.identity import (
    CROSS_SOURCE,
    DUPLICATE_SAME_SOURCE,
    NEW,
    OUTCOMES,
    REPLAY,
    Decision,
    IdentityConfig,
    Resolver,
    sort_key,
)
from transforms.identity_store import check_spec, open_store
from transforms.normalize import NormalizedLead

__all__ = ["CROSS_SOURCE", "DUPLICATE_SAME_SOURCE", "NEW", "OUTCOMES", "REPLAY", "DeduplicatePersons",
           "IdentityConfig"]

ONE_KEY = "identity"


class _Counters:
    def __init__(self):
        self.outcomes = {o: Metrics.counter("dedup", o) for o in OUTCOMES}
        self.merges = Metrics.counter("identity", "merges")
        self.corrections = Metrics.counter("identity", "primary_corrections")
        self.shared = Metrics.counter("identity", "shared_identifiers")
        self.guards = Metrics.counter("identity", "guards_tripped")
        self.redecided = Metrics.counter("identity", "redecided_after_retry")
        self.erased = Metrics.counter("identity", "erased_person_messages")

    def count(self, d: Decision) -> None:
        if d.dead_letter is not None:
            self.erased.inc()
            return
        self.outcomes[d.outcome].inc()
        self.merges.inc(len(d.merges))
        self.corrections.inc(sum(1 for v in d.versions if v.change == "primary_corrected"))
        self.shared.inc(d.shared)
        self.guards.inc(len(d.guards))
        self.redecided.inc(d.redecided)


def emit(d: Decision) -> Iterable:
    """A decision as the stage's outputs, each stamped with its event's publish time."""
    if d.dead_letter is not None:
        ts = Timestamp.from_utc_datetime(d.dead_letter.publish_time)
        yield beam.pvalue.TaggedOutput(DeduplicatePersons.DEAD_LETTERS, beam.window.TimestampedValue(d.dead_letter, ts))
        return
    ts = Timestamp.from_utc_datetime(d.event.publish_time)
    yield beam.window.TimestampedValue(d.event, ts)
    tagged = [(DeduplicatePersons.LEADS, [d.lead] if d.lead else []),
              (DeduplicatePersons.HISTORY, [d.history] if d.history else []),
              (DeduplicatePersons.MERGES, d.merges), (DeduplicatePersons.VERSIONS, d.versions),
              (DeduplicatePersons.GUARDS, d.guards)]
    for tag, records in tagged:
        for r in records:
            yield beam.pvalue.TaggedOutput(tag, beam.window.TimestampedValue(r, ts))


class _ResolverDoFn(beam.DoFn):
    def __init__(self, config: IdentityConfig):
        self.config = config

    def setup(self):
        # only an emulator's table is made here; in production Terraform makes it (the job may not administer it)
        self.store = open_store(self.config.store, create=bool(os.environ.get("BIGTABLE_EMULATOR_HOST")))
        self.resolver = Resolver(self.store, self.config)
        self.counters = _Counters()

    def teardown(self):
        self.store.close()

    def _decide(self, lead: NormalizedLead) -> Iterable:
        d = self.resolver.decide(lead)
        self.counters.count(d)
        yield from emit(d)


class DedupDoFn(_ResolverDoFn):
    """Streaming, on one key: each event decided as it arrives."""

    FENCE = ReadModifyWriteStateSpec("fence", PickleCoder())  # (epoch, committed generation)

    def setup(self):
        super().setup()
        self.written = None  # the fence this worker last wrote: its cache is valid while the state still says so

    def start_bundle(self):
        self.begun = False

    def process(self, element, fence=beam.DoFn.StateParam(FENCE)):
        _, lead = element
        if not self.begun:
            epoch, committed = fence.read() or (uuid.uuid4().hex, 0)
            if self.written != (epoch, committed):
                self.resolver.store.clear()  # another worker (or a failed attempt) wrote since
            self.written = (epoch, self.resolver.begin(epoch, committed))
            fence.write(self.written)
            self.begun = True
        yield from self._decide(lead)


class DecideGroupDoFn(_ResolverDoFn):
    """Bounded: every event of the run, decided in event-time order."""

    def process(self, element):
        _, leads = element
        if self.config.store.startswith("memory"):  # a retried group starts from nothing again
            self.resolver = Resolver(open_store("memory"), self.config)
        self.resolver.begin(uuid.uuid4().hex, 0)
        for lead in sorted(leads, key=sort_key):
            yield from self._decide(lead)


class DeduplicatePersons(beam.PTransform):
    """NormalizedLead -> LeadEvent (main ``events``), Lead (``leads``), SourceHistory (``history``),
    LeadMerge (``merges``), LeadVersion (``versions``), IdentifierGuard (``guards``), DeadLetter (``dead_letters``:
    units of erased persons)."""

    LEADS, HISTORY, MERGES, VERSIONS, GUARDS = "leads", "history", "merges", "versions", "guards"
    DEAD_LETTERS = "dead_letters"

    def __init__(self, config: IdentityConfig | None = None):
        super().__init__()
        self.config = config or IdentityConfig()
        check_spec(self.config.store)
        if self.config.store == "memory":  # one store for this transform's DoFn instances in the process
            self.config = dataclasses.replace(self.config, store=f"memory:{uuid.uuid4().hex}")

    def expand(self, leads):
        keyed = leads | "KeyByIdentity" >> beam.Map(lambda lead: (ONE_KEY, lead)).with_output_types(
            beam.typehints.KV[str, NormalizedLead])
        if leads.is_bounded:
            decide_fn = DecideGroupDoFn(self.config)
            keyed = keyed | "GroupPerPerson" >> beam.GroupByKey()
        else:
            decide_fn = DedupDoFn(self.config)
        return keyed | "DecidePerPerson" >> beam.ParDo(decide_fn).with_outputs(
            self.LEADS, self.HISTORY, self.MERGES, self.VERSIONS, self.GUARDS, self.DEAD_LETTERS, main="events")
