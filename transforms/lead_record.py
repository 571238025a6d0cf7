"""The living lead record: every change to a lead as a ``lead_versions`` row, and the current state.

Identity changes (created, new_source, merged, merged_into, primary_corrected) come from the dedup stage;
this module adds ``scored`` (Score) and the routing steps (assigned, reassigned, accepted, rejected, expired,
manual_review, queued, overflowed, closed) from ``lead_assignments``. ``current_state`` folds versions, events
and merges into one ``LeadCurrent`` per lead: what ``schemas/views/leads_current.sql`` computes in BigQuery,
and what bounded runs write as ``leads_current.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam

from schemas.records import Assignment, Lead, LeadCurrent, LeadEvent, LeadMerge, LeadVersion
from transforms.identity import version_id_for

# routing action -> (version change, lead status after it; None: unchanged)
ROUTING_CHANGES = {
    "assigned": ("assigned", "assigned"), "reassigned": ("reassigned", "assigned"),
    "accepted": ("accepted", "accepted"), "rejected": ("rejected", None), "expired": ("expired", None),
    "manual_review": ("manual_review", "manual_review"), "queued": ("queued", "queued"),
    "overflowed": ("overflowed", None), "closed": ("closed", "closed"),
}


def scored_version(lead: Lead) -> LeadVersion:
    return LeadVersion(
        version_id=version_id_for(lead.lead_id, "scored", lead.model_version or lead.score_source or ""),
        lead_id=lead.lead_id, change="scored", changed_at=lead.processed_at, event_id=None, status="scored",
        score=lead.score, score_source=lead.score_source, priority_tier=lead.priority_tier,
        processed_at=lead.processed_at)


def assignment_versions(a: Assignment) -> list[LeadVersion]:
    """The version a routing step makes (none for ``ignored`` agent events)."""
    if a.action not in ROUTING_CHANGES:
        return []
    change, status = ROUTING_CHANGES[a.action]
    return [LeadVersion(
        version_id=version_id_for(a.lead_id, change, a.assignment_event_id), lead_id=a.lead_id, change=change,
        changed_at=a.action_at, event_id=None, status=status, team=a.team, agent_id=a.agent_id,
        attempt=a.attempt, reason=a.reason, processed_at=a.processed_at)]

ROUTED = frozenset(change for change, _ in ROUTING_CHANGES.values())


def primary_of(lead: Lead, versions: list[LeadVersion]) -> tuple:
    """(source, provider, first seen) of the person: the lead's own earliest correction, else its first sighting.
    The survivor of a merge is the person with the earliest event, so absorbed leads never hold the primary.
    A correction is made only for an event earlier than the primary (ties in event time broken by arrival), so
    it wins a tie with the first sighting, and of two corrections at the same event time the later one wins."""
    best = (lead.first_seen_at, 1, 0.0, lead.primary_source, lead.primary_provider)
    for v in versions:
        if v.lead_id == lead.lead_id and v.change == "primary_corrected" and v.first_seen_at is not None:
            later = -(v.processed_at or v.changed_at).timestamp()
            best = min(best, (v.first_seen_at, 0, later, v.primary_source, v.primary_provider))
    return best[3], best[4], best[0]


def _order(v: LeadVersion) -> tuple:
    return (v.changed_at, v.processed_at or v.changed_at, v.version_id)


def current_state(lead: Lead, versions: Iterable[LeadVersion], events: Iterable[LeadEvent],
                  merged_into: str | None, absorbed: Iterable[str] = ()) -> LeadCurrent:
    """One lead's current record. ``versions`` and ``events`` include those of the leads it absorbed;
    ``merged_into`` is the survivor when this lead was merged away (then status is ``merged``)."""
    vs = sorted(versions, key=_order)
    events = list(events)
    routing_status, agent, team, attempts = None, None, None, 0
    score = tier = score_source = None
    primary = primary_of(lead, vs)
    for v in vs:
        if v.lead_id != lead.lead_id:
            continue
        if v.change == "scored":
            score, tier, score_source = v.score, v.priority_tier, v.score_source
        elif v.change in ROUTED:
            team = v.team or team
            agent = v.agent_id if v.change != "manual_review" else None
            attempts = max(attempts, v.attempt or 0)
            routing_status = v.status or routing_status
    status = "merged" if merged_into is not None else routing_status or ("scored" if score_source else "new")
    sources = sorted({e.source_id for e in events if e.outcome != "replay"} | {primary[0]})
    times = [e.event_time for e in events]
    return LeadCurrent(
        lead_id=lead.lead_id, status=status, merged_into=merged_into, merged_lead_ids=sorted(absorbed),
        agent_id=agent, team=team, attempts=attempts, primary_source=primary[0], primary_provider=primary[1],
        sources=sources, source_count=len(sources), events=len(events), score=score, priority_tier=tier,
        score_source=score_source, first_seen_at=primary[2], last_seen_at=max(times, default=primary[2]),
        phone_e164=lead.phone_e164, email=lead.email, full_name=lead.full_name, is_test=lead.is_test,
        updated_at=max([v.changed_at for v in vs] + times, default=primary[2]))


def survivors(merges: Iterable[LeadMerge]) -> dict[str, str]:
    """merged lead -> its survivor: the latest merge row of each merged lead (re-pointed on merges of merges)."""
    latest: dict[str, LeadMerge] = {}
    for m in merges:
        old = latest.get(m.merged_lead_id)
        if old is None or (m.merged_at, m.processed_at) > (old.merged_at, old.processed_at):
            latest[m.merged_lead_id] = m
    return {k: m.into_lead_id for k, m in latest.items()}


class CurrentLeads(beam.PTransform):
    """Bounded runs: ``{"leads", "lead_versions", "lead_events", "lead_merges"}`` -> LeadCurrent per lead."""

    def expand(self, tables):
        merges = beam.pvalue.AsList(tables["lead_merges"])
        keyed = {
            "lead": tables["leads"] | "LeadById" >> beam.Map(lambda r: (r.lead_id, r)),
            "version": tables["lead_versions"] | "VersionByLead" >> beam.Map(lambda r: (r.lead_id, r)),
            "event": tables["lead_events"] | "EventByLead" >> beam.Map(lambda r: (r.lead_id, r)),
        }
        per_lead = keyed | "PerLead" >> beam.CoGroupByKey()
        return (per_lead
                | "ToSurvivor" >> beam.FlatMap(_to_survivor, merges)
                | "PerPerson" >> beam.GroupByKey()
                | "Fold" >> beam.FlatMap(_fold))


_SURVIVORS: dict[int, dict[str, str]] = {}  # per side-input list: computed once per worker


def _to_survivor(item, merges: list[LeadMerge]):
    lead_id, parts = item
    into = _SURVIVORS.get(id(merges))
    if into is None:
        _SURVIVORS.clear()
        into = _SURVIVORS[id(merges)] = survivors(merges)
    yield into.get(lead_id, lead_id), (lead_id, list(parts["lead"]), list(parts["version"]), list(parts["event"]))


def _fold(item) -> Iterable[LeadCurrent]:
    survivor, parts = item
    parts = list(parts)
    rows = {lead_id: leads[0] for lead_id, leads, _, _ in parts if leads}
    if survivor not in rows:
        return  # versions without a lead row (a lead of an earlier run): nothing to show
    versions = [v for _, _, vs, _ in parts for v in vs]
    events = [e for _, _, _, es in parts for e in es]
    absorbed = [lead_id for lead_id in rows if lead_id != survivor]
    yield current_state(rows[survivor], versions, events, None, absorbed)
    for lead_id in absorbed:
        own = [v for v in versions if v.lead_id == lead_id]
        yield current_state(rows[lead_id], own, [e for e in events if e.lead_id == lead_id], survivor)
