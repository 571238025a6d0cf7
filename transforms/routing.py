"""Routing, as pure functions: territory, team, and the per-team dispatcher that assigns agents.

* **Territory**: by postal code (longest prefix), then state, then the phone number's region, then country.
* **Team**: by territory and priority tier (a ``*`` row is the territory's default team).
* **Agent**: ``dispatch_lead`` picks from the team's agents with *smooth weighted round robin* (the
  nginx algorithm: every candidate gains its capacity, the highest wins and pays the candidates' total),
  so over any stretch with the same candidates each agent gets leads in proportion to its capacity and
  no agent gets two in a row that its weight does not justify. Agents marked unavailable, outside their
  working hours (in their own time zone) or set away are skipped.
* **SLA**: an assignment expires ``sla`` seconds after it was made unless the agent accepts it; then the
  lead goes to the next available agent it has not been offered to, and the first agent is set away.
  A lead with no territory, no team or no available agent goes to manual review, with the reason.

``TeamState`` is everything the dispatcher keeps for one team; the Beam stage (``transforms.assign``)
stores it in keyed state (streaming) or replays a team's inputs through it in time order (bounded).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import phonenumbers

from schemas.derive import evolve
from schemas.records import AgentStatus, Assignment, Lead
from transforms.enrich import phone_facts
from transforms.reference import Agent, ReferenceData

NAMESPACE = uuid.UUID("6f1b8a52-2b0e-4c39-9d53-4f3c0c7f5a10")
CLOSED_MEMORY = timedelta(days=7)  # how long accepted / closed leads are remembered (for 'not_pending')

US_STATES = {
    "ALABAMA": "AL", "ALASKA": "AK", "ARIZONA": "AZ", "ARKANSAS": "AR", "CALIFORNIA": "CA", "COLORADO": "CO",
    "CONNECTICUT": "CT", "DELAWARE": "DE", "DISTRICT OF COLUMBIA": "DC", "FLORIDA": "FL", "GEORGIA": "GA",
    "HAWAII": "HI", "IDAHO": "ID", "ILLINOIS": "IL", "INDIANA": "IN", "IOWA": "IA", "KANSAS": "KS",
    "KENTUCKY": "KY", "LOUISIANA": "LA", "MAINE": "ME", "MARYLAND": "MD", "MASSACHUSETTS": "MA",
    "MICHIGAN": "MI", "MINNESOTA": "MN", "MISSISSIPPI": "MS", "MISSOURI": "MO", "MONTANA": "MT",
    "NEBRASKA": "NE", "NEVADA": "NV", "NEW HAMPSHIRE": "NH", "NEW JERSEY": "NJ", "NEW MEXICO": "NM",
    "NEW YORK": "NY", "NORTH CAROLINA": "NC", "NORTH DAKOTA": "ND", "OHIO": "OH", "OKLAHOMA": "OK",
    "OREGON": "OR", "PENNSYLVANIA": "PA", "RHODE ISLAND": "RI", "SOUTH CAROLINA": "SC", "SOUTH DAKOTA": "SD",
    "TENNESSEE": "TN", "TEXAS": "TX", "UTAH": "UT", "VERMONT": "VT", "VIRGINIA": "VA", "WASHINGTON": "WA",
    "WEST VIRGINIA": "WV", "WISCONSIN": "WI", "WYOMING": "WY",
}


# --------------------------------------------------------------------------------------
# Territory and team
# --------------------------------------------------------------------------------------


def _state_key(country: str, state: str | None) -> str | None:
    if not state:
        return None
    s = " ".join(state.upper().split())
    if country == "US":
        return US_STATES.get(s, s)
    return s


def phone_region(phone_e164: str | None) -> tuple[str | None, str | None]:
    """(region code, state or area) of a phone number, from phonenumbers' geocoder (``(None, None)``)."""
    if not phone_e164:
        return None, None
    try:
        _type, _carrier, description, _zones, region = phone_facts(phone_e164)
    except phonenumbers.NumberParseException:
        return None, None
    if description and region in ("US", "CA"):
        _head, comma, tail = description.rpartition(",")
        description = tail.strip() if comma else description  # "New York, NY" -> "NY"; "Colorado" stays
    return region, description


def _postal_match(prefix: str, postal: str) -> bool:
    """``prefix`` starts ``postal``; a prefix ending in a letter must not run into another letter
    (GB postcode area 'N' matches 'N1 9GU' but not 'NE1 4ST')."""
    if not postal.startswith(prefix):
        return False
    return not (prefix[-1].isalpha() and len(postal) > len(prefix) and postal[len(prefix)].isalpha())


def resolve_territory(ref: ReferenceData, country: str | None, postal_code: str | None, state: str | None,
                      phone_e164: str | None) -> tuple[str | None, str | None]:
    """(territory, what matched): postal_code, then state, then phone_region, then country."""
    phone_country, phone_area = phone_region(phone_e164)
    country = (country or phone_country or "").upper() or None
    if not country:
        return None, None
    if postal_code:
        postal = postal_code.upper().replace(" ", "")
        for prefix, territory in ref.postal.get(country, ()):
            if _postal_match(prefix, postal):
                return territory, "postal_code"
    key = _state_key(country, state)
    if key and (country, key) in ref.states:
        return ref.states[(country, key)], "state"
    if phone_country == country:
        key = _state_key(country, phone_area)
        if key and (country, key) in ref.states:
            return ref.states[(country, key)], "phone_region"
    if country in ref.countries:
        return ref.countries[country], "country"
    return None, None


def team_for(ref: ReferenceData, territory: str | None, tier: str | None) -> str | None:
    if territory is None:
        return None
    return ref.teams.get((territory, tier or "*")) or ref.teams.get((territory, "*"))


def routing_columns(ref: ReferenceData, lead: Lead) -> dict:
    """territory, territory_match and team of ``lead`` (field -> value)."""
    territory, match = resolve_territory(ref, lead.country, lead.postal_code, lead.state, lead.phone_e164)
    return {"territory": territory, "territory_match": match, "team": team_for(ref, territory, lead.priority_tier)}


def route_lead(ref: ReferenceData, lead: Lead) -> Lead:
    """The lead with territory, territory_match and team set (agent assignment comes later)."""
    return dataclasses.replace(lead, **routing_columns(ref, lead))


# --------------------------------------------------------------------------------------
# The dispatcher
# --------------------------------------------------------------------------------------


@dataclass
class Pending:
    lead: Lead
    agent_id: str
    attempt: int
    deadline: datetime | None  # None: no SLA (no agent-event input that could accept)
    offered: tuple[str, ...]


@dataclass
class TeamState:
    """A team's dispatcher state: round-robin weights, agents set away, leads awaiting acceptance."""

    current: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)  # agent -> away | offline (online: absent)
    pending: dict[str, Pending] = field(default_factory=dict)
    closed: dict[str, datetime] = field(default_factory=dict)  # lead -> when it stopped pending
    seen_events: dict[str, datetime] = field(default_factory=dict)  # agent event ids (repeats ignored)

    def next_deadline(self) -> datetime | None:
        return min((p.deadline for p in self.pending.values() if p.deadline is not None), default=None)

    def prune(self, now: datetime) -> None:
        cutoff = now - CLOSED_MEMORY
        self.closed = {k: t for k, t in self.closed.items() if t >= cutoff}
        self.seen_events = {k: t for k, t in self.seen_events.items() if t >= cutoff}


@dataclass(frozen=True)
class AgentEvent:
    event_id: str
    agent_id: str
    type: str  # accepted | rejected | online | away | offline
    at: datetime
    lead_id: str | None = None


# Outputs of the dispatcher: (kind, record)
LEAD, DELIVERY, MANUAL_REVIEW, ASSIGNMENT, AGENT_STATUS = "lead", "delivery", "manual_review", "assignment", \
    "agent_status"
Output = tuple[str, Any]


def candidates(ref: ReferenceData, state: TeamState, team: str, at: datetime,
               exclude: tuple[str, ...] = ()) -> list[Agent]:
    return [a for a in ref.agents.get(team, ())
            if a.available and a.agent_id not in state.status and a.agent_id not in exclude and a.on_shift(at)]


def pick_agent(state: TeamState, agents: list[Agent]) -> Agent | None:
    """Smooth weighted round robin over ``agents`` (weights = capacity); updates ``state.current``."""
    if not agents:
        return None
    total = sum(a.capacity for a in agents)
    best = None
    for a in agents:
        state.current[a.agent_id] = state.current.get(a.agent_id, 0.0) + a.capacity
        if best is None or state.current[a.agent_id] > state.current[best.agent_id]:
            best = a
    state.current[best.agent_id] -= total
    return best


def _step(lead: Lead | None, action: str, attempt: int, at: datetime, now: datetime, *,
          agent_id: str | None = None, reason: str | None = None, deadline: datetime | None = None,
          event_id: str | None = None, lead_id: str | None = None, team: str | None = None) -> Assignment:
    """One assignment-history row; ``lead`` is None for agent events naming a lead this team does not hold."""
    lead_id = lead.lead_id if lead is not None else lead_id or ""
    key = f"{lead_id}|{action}|{attempt}|{agent_id or ''}|{event_id or ''}"
    return Assignment(
        assignment_event_id=str(uuid.uuid5(NAMESPACE, key)), lead_id=lead_id, action=action, attempt=attempt,
        team=lead.team if lead is not None else team, territory=lead.territory if lead is not None else None,
        agent_id=agent_id, reason=reason, priority_tier=lead.priority_tier if lead is not None else None,
        lead_event_time=lead.first_seen_at if lead is not None else None, action_at=at, sla_deadline=deadline,
        agent_event_id=event_id, processed_at=now)


def manual_review(lead: Lead, reason: str, at: datetime, now: datetime, attempt: int = 1,
                  first: bool = True) -> list[Output]:
    """A lead no agent can take: the manual-review queue, with the reason (and its leads row when first)."""
    reviewed = evolve(lead, routing_status="manual_review", routing_reason=reason, agent_id=None, routed_at=at) \
        if first else evolve(lead, routing_reason=reason, agent_id=None)
    out: list[Output] = [(MANUAL_REVIEW, reviewed), (ASSIGNMENT, _step(lead, "manual_review", attempt, at, now,
                                                                        reason=reason))]
    return [(LEAD, reviewed), *out] if first else out


def _offer(ref: ReferenceData, state: TeamState, lead: Lead, at: datetime, now: datetime, sla: timedelta | None,
           attempt: int, offered: tuple[str, ...], action: str, reason: str | None = None) -> list[Output]:
    first = attempt == 1
    agent = pick_agent(state, candidates(ref, state, lead.team, at, exclude=offered))
    if agent is None:
        return manual_review(lead, "no_available_agent", at, now, attempt, first=first)
    deadline = at + sla if sla is not None else None
    assigned = evolve(lead, agent_id=agent.agent_id, routing_status="assigned", routed_at=at) if first else \
        evolve(lead, agent_id=agent.agent_id)
    if sla is not None:  # without an SLA nothing can accept or expire it: nothing to keep
        state.pending[lead.lead_id] = Pending(assigned, agent.agent_id, attempt, deadline, (*offered, agent.agent_id))
    out: list[Output] = [(DELIVERY, assigned),
                         (ASSIGNMENT, _step(lead, action, attempt, at, now, agent_id=agent.agent_id, reason=reason,
                                            deadline=deadline))]
    return [(LEAD, assigned), *out] if first else out


def dispatch_lead(ref: ReferenceData, state: TeamState, lead: Lead, at: datetime, now: datetime,
                  sla: timedelta | None) -> list[Output]:
    """A newly routed lead (``lead.team`` set): offer it to the next agent, or manual review."""
    if lead.lead_id in state.pending:  # a replayed lead: already being handled
        return []
    return _offer(ref, state, lead, at, now, sla, 1, (), "assigned")


def _reassign(ref: ReferenceData, state: TeamState, p: Pending, at: datetime, now: datetime, sla: timedelta | None,
              reason: str) -> list[Output]:
    del state.pending[p.lead.lead_id]
    out = _offer(ref, state, p.lead, at, now, sla, p.attempt + 1, p.offered, "reassigned", reason)
    if p.lead.lead_id not in state.pending:
        state.closed[p.lead.lead_id] = at
    return out


def expire(ref: ReferenceData, state: TeamState, team: str, at: datetime, now: datetime,
           sla: timedelta | None) -> list[Output]:
    """Every assignment whose deadline is at or before ``at``: expired, agent set away, lead re-assigned."""
    out: list[Output] = []
    due = [p for p in state.pending.values() if p.deadline is not None and p.deadline <= at]
    for p in sorted(due, key=lambda p: p.deadline):
        out.append((ASSIGNMENT, _step(p.lead, "expired", p.attempt, p.deadline, now, agent_id=p.agent_id,
                                      reason="sla_expired")))
        if state.status.get(p.agent_id) is None:
            state.status[p.agent_id] = "away"
            out.append((AGENT_STATUS, AgentStatus(p.agent_id, team, "away", "sla_expired", None, p.deadline, now)))
        out.extend(_reassign(ref, state, p, p.deadline, now, sla, "sla_expired"))
    state.prune(at)
    return out


def on_agent_event(ref: ReferenceData, state: TeamState, team: str, ev: AgentEvent, now: datetime,
                   sla: timedelta | None) -> list[Output]:
    """Apply an agent's event: status changes, acceptance, rejection (then re-assignment)."""
    if ev.event_id in state.seen_events:
        return []
    state.seen_events[ev.event_id] = ev.at
    if ev.type in ("online", "away", "offline"):
        if state.status.get(ev.agent_id, "online") == ev.type:
            return []  # no change (presence heartbeats): nothing to record
        if ev.type == "online":
            state.status.pop(ev.agent_id, None)
        else:
            state.status[ev.agent_id] = ev.type
        return [(AGENT_STATUS, AgentStatus(ev.agent_id, team, ev.type, "agent_event", ev.event_id, ev.at, now))]
    lead_id = ev.lead_id or ""
    p = state.pending.get(lead_id)
    if p is None or p.agent_id != ev.agent_id:
        reason = ("not_assigned_agent" if p is not None else "not_pending" if lead_id in state.closed
                  else "unknown_lead")
        return [(ASSIGNMENT, _step(p.lead if p else None, "ignored", p.attempt if p else 0, ev.at, now,
                                   agent_id=ev.agent_id, reason=reason, event_id=ev.event_id, lead_id=lead_id,
                                   team=team))]
    if ev.type == "accepted":
        del state.pending[lead_id]
        state.closed[lead_id] = ev.at
        return [(ASSIGNMENT, _step(p.lead, "accepted", p.attempt, ev.at, now, agent_id=ev.agent_id,
                                   event_id=ev.event_id))]
    out: list[Output] = [(ASSIGNMENT, _step(p.lead, "rejected", p.attempt, ev.at, now, agent_id=ev.agent_id,
                                            reason="agent_rejected", event_id=ev.event_id))]
    return out + _reassign(ref, state, p, ev.at, now, sla, "agent_rejected")
