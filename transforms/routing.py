"""Routing, as pure functions: territory, team, and the per-desk dispatcher that assigns agents.

* **Territory**: by postal code (longest prefix), then state, then the phone number's region, then country.
* **Team**: by territory and priority tier (a ``*`` row is the territory's default team).
* **Owner first**: a later event of a person an agent accepted goes to that agent (``on_person_event``).
* **Agent**: ``dispatch_lead`` picks from the team's free agents with *smooth weighted round robin* (the
  nginx algorithm: every candidate gains its capacity, the highest wins and pays the candidates' total),
  so over any stretch with the same candidates each agent gets leads in proportion to its capacity and
  no agent gets two in a row that its weight does not justify. Agents unavailable, away or offline, off
  shift (in their own time zone), at their ``max_open`` cap, or already offered the lead are skipped, and each
  offer records who was skipped and why (``decision``).
* **Queue**: a lead with no free agent waits, hot first then oldest first, and is offered the moment an agent
  is free; after ``max_queue`` it goes to manual review, after ``overflow`` it moves to the overflow team.
* **SLA**: an offer expires ``sla`` seconds after it was made unless the agent accepts it; then the lead goes
  to the next free agent it has not been offered to, and an agent who let ``max_missed`` expire in a row is
  set offline. A lead with no territory or team goes to manual review, with the reason.

``TeamState`` is everything the dispatcher keeps for one desk (a team, or the teams linked by overflow); the
Beam stage (``transforms.assign``) stores it in keyed state (streaming) or replays a desk's inputs through it in
time order (bounded). docs/routing.md describes the rules and the state.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
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

TIER_ORDER = {"hot": 0, "warm": 1, "cold": 2}  # waiting leads: this order, then oldest first


@dataclass(frozen=True)
class Rules:
    """The dispatcher's settings. ``sla`` None: no agent-event input, so nothing can accept, close or free an
    agent; offers are not kept (no caps, no queue: a lead without an agent goes to manual review at once)."""

    sla: timedelta | None
    max_queue: timedelta = timedelta(seconds=900)
    overflow: timedelta | None = None  # None: waiting leads never move to the overflow team
    max_missed: int = 1  # offers an agent lets expire in a row before it is set offline
    queue: bool = True  # False: the rules before the queue (no free agent: manual review at once)
    caps: bool = True  # False: the rules before caps (max_open ignored; capacity only weighs the round robin)


@dataclass
class Pending:
    lead: Lead
    agent_id: str
    attempt: int
    deadline: datetime | None  # None: no SLA (no agent-event input that could accept)
    offered: tuple[str, ...]


@dataclass
class Waiting:
    """A lead in its team's queue: no agent could take it when it came (or came back)."""

    lead: Lead
    attempt: int  # the attempt of its next offer
    offered: tuple[str, ...]
    since: datetime  # the queue clock (max_queue): arrival, or the shift start when the whole team was off shift
    team_since: datetime  # the overflow clock: as ``since``, restarted when it moves to the overflow team
    announced: bool  # its ``leads`` row is written
    queued_at: datetime | None = None  # when it joined the queue (for the waits recorded)

    def order(self) -> tuple:
        return TIER_ORDER.get(self.lead.priority_tier or "", 3), self.since, self.lead.lead_id


def _defaults(cls) -> dict:
    return {f.name: f.default_factory() for f in dataclasses.fields(cls)
            if f.default_factory is not dataclasses.MISSING}


@dataclass
class TeamState:
    """A desk's dispatcher state (a team, or the teams linked by overflow): round-robin credit, agents set away
    or offline, offers awaiting acceptance, accepted leads (open until closed), the waiting queue."""

    current: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)  # agent -> away | offline (online: absent)
    pending: dict[str, Pending] = field(default_factory=dict)
    closed: dict[str, datetime] = field(default_factory=dict)  # lead -> when it stopped pending
    seen_events: dict[str, datetime] = field(default_factory=dict)  # agent event ids (repeats ignored)
    queue: dict[str, Waiting] = field(default_factory=dict)
    accepted: dict[str, tuple[str, datetime, int]] = field(default_factory=dict)  # lead -> (agent, when, attempt)
    missed: dict[str, int] = field(default_factory=dict)  # agent -> offers let expire in a row
    time: datetime | None = None  # the latest instant the dispatcher has handled

    def __setstate__(self, saved: dict) -> None:  # state pickled by an older version lacks the newer fields
        self.__dict__.update({**_defaults(TeamState), "time": None, **saved})

    def load(self) -> Counter:
        """Open leads per agent: offered and awaiting an answer, or accepted and not closed."""
        held = Counter(p.agent_id for p in self.pending.values())
        held.update(v[0] for v in self.accepted.values())
        return held

    def next_deadline(self) -> datetime | None:
        return min((p.deadline for p in self.pending.values() if p.deadline is not None), default=None)

    def prune(self, now: datetime) -> None:
        cutoff = now - CLOSED_MEMORY
        self.closed = {k: t for k, t in self.closed.items() if t >= cutoff}
        self.seen_events = {k: t for k, t in self.seen_events.items() if t >= cutoff}
        self.accepted = {k: v for k, v in self.accepted.items() if v[1] >= cutoff}  # never closed: let go


@dataclass(frozen=True)
class PersonEvent:
    """A later event of a known person (a duplicate, another source) with its facts as ``update``, or a merge
    (``merged_into`` set: ``lead_id`` now counts under it): what owner-first routing needs."""

    event_id: str
    lead_id: str
    at: datetime
    update: Lead | None = None
    merged_into: str | None = None


@dataclass(frozen=True)
class AgentEvent:
    event_id: str
    agent_id: str
    type: str  # accepted | rejected | closed | online | away | offline
    at: datetime
    lead_id: str | None = None


# Outputs of the dispatcher: (kind, record)
LEAD, DELIVERY, MANUAL_REVIEW, ASSIGNMENT, AGENT_STATUS = "lead", "delivery", "manual_review", "assignment", \
    "agent_status"
Output = tuple[str, Any]


def skip_reason(state: TeamState, agent: Agent, at: datetime, offered: tuple[str, ...], load: Counter | None
                ) -> str | None:
    """Why ``agent`` cannot be offered a lead now (None: it can)."""
    if not agent.available:
        return "unavailable"
    if agent.agent_id in state.status:
        return state.status[agent.agent_id]  # away | offline
    if agent.agent_id in offered:
        return "already_offered"
    if not agent.on_shift(at):
        return "off_shift"
    if load is not None and load[agent.agent_id] >= agent.cap:
        return "at_cap"
    return None


def screen(ref: ReferenceData, state: TeamState, team: str, at: datetime, offered: tuple[str, ...] = (),
           load: Counter | None = None, caps: bool = True) -> tuple[list[Agent], dict[str, str]]:
    """(the team's agents who can be offered a lead now, file order; every other agent -> why it is skipped)."""
    load = (state.load() if load is None else load) if caps else None
    free, skipped = [], {}
    for a in ref.agents.get(team, ()):
        why = skip_reason(state, a, at, offered, load)
        if why is None:
            free.append(a)
        else:
            skipped[a.agent_id] = why
    return free, skipped


def candidates(ref: ReferenceData, state: TeamState, team: str, at: datetime,
               exclude: tuple[str, ...] = ()) -> list[Agent]:
    return screen(ref, state, team, at, exclude)[0]


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
          event_id: str | None = None, lead_id: str | None = None, team: str | None = None,
          decision: dict | None = None) -> Assignment:
    """One assignment-history row; ``lead`` is None for agent events naming a lead this team does not hold."""
    lead_id = lead.lead_id if lead is not None else lead_id or ""
    key = f"{lead_id}|{action}|{attempt}|{agent_id or ''}|{event_id or ''}"
    if action in ("queued", "dequeued", "overflowed"):  # a lead can wait more than once per attempt
        key += f"|{at.isoformat()}"
    return Assignment(
        assignment_event_id=str(uuid.uuid5(NAMESPACE, key)), lead_id=lead_id, action=action, attempt=attempt,
        team=lead.team if lead is not None else team, territory=lead.territory if lead is not None else None,
        agent_id=agent_id, reason=reason, priority_tier=lead.priority_tier if lead is not None else None,
        lead_event_time=lead.first_seen_at if lead is not None else None, action_at=at, sla_deadline=deadline,
        agent_event_id=event_id, processed_at=now,
        decision=json.dumps(decision, sort_keys=True) if decision is not None else None)


def manual_review(lead: Lead, reason: str, at: datetime, now: datetime, attempt: int = 1,
                  first: bool = True, decision: dict | None = None) -> list[Output]:
    """A lead no agent can take: the manual-review queue, with the reason (and its leads row when first)."""
    reviewed = evolve(lead, routing_status="manual_review", routing_reason=reason, agent_id=None, routed_at=at) \
        if first else evolve(lead, routing_reason=reason, agent_id=None)
    out: list[Output] = [(MANUAL_REVIEW, reviewed), (ASSIGNMENT, _step(lead, "manual_review", attempt, at, now,
                                                                        reason=reason, decision=decision))]
    return [(LEAD, reviewed), *out] if first else out


def audit(free: list[Agent], chosen: Agent | None, skipped: dict[str, str]) -> dict:
    """The ``decision`` column of an offer or a wait: who could take it, who got it, why each other agent did not."""
    return {"candidates": [a.agent_id for a in free], "chosen": chosen.agent_id if chosen else None,
            "skipped": [{"agent_id": a, "reason": why} for a, why in skipped.items()]}


def _offer(ref: ReferenceData, state: TeamState, lead: Lead, at: datetime, now: datetime, rules: Rules,
           attempt: int, offered: tuple[str, ...], action: str, reason: str | None = None,
           announced: bool = False) -> list[Output]:
    """Offer ``lead`` to the next free agent of its team; else it waits in the queue or goes to manual review."""
    first = not announced
    load = state.load()
    free, skipped = screen(ref, state, lead.team, at, offered, load, rules.caps)
    agent = pick_agent(state, free)
    if agent is None:
        return _no_agent(ref, state, lead, at, now, rules, attempt, offered, announced, skipped)
    decision = {**audit(free, agent, skipped), "open_before": load[agent.agent_id], "max_open": agent.cap}
    deadline = at + rules.sla if rules.sla is not None else None
    assigned = evolve(lead, agent_id=agent.agent_id, routing_status="assigned", routing_reason=None, routed_at=at) \
        if first else evolve(lead, agent_id=agent.agent_id)
    if rules.sla is not None:  # without an SLA nothing can accept or expire it: nothing to keep
        state.pending[lead.lead_id] = Pending(assigned, agent.agent_id, attempt, deadline, (*offered, agent.agent_id))
    out: list[Output] = [(DELIVERY, assigned),
                         (ASSIGNMENT, _step(lead, action, attempt, at, now, agent_id=agent.agent_id, reason=reason,
                                            deadline=deadline, decision=decision))]
    return [(LEAD, assigned), *out] if first else out


def _no_agent(ref: ReferenceData, state: TeamState, lead: Lead, at: datetime, now: datetime, rules: Rules,
              attempt: int, offered: tuple[str, ...], announced: bool, skipped: dict[str, str]) -> list[Output]:
    staffed = [a for a in ref.agents.get(lead.team, ()) if a.available]
    decision = audit([], None, skipped)
    if not staffed:
        return manual_review(lead, "no_agents_in_team", at, now, attempt, not announced, decision)
    if all(a.agent_id in offered for a in staffed):
        return manual_review(lead, "all_agents_offered", at, now, attempt, not announced, decision)
    if rules.sla is None or not rules.queue:  # nothing can free an agent (or no queue): manual review now
        return manual_review(lead, "no_available_agent", at, now, attempt, not announced, decision)
    on_shift = [a for a in staffed if a.on_shift(at)]
    reason, since = "no_available_agent", at
    if not on_shift:  # the whole team is off shift: the wait counts from its next shift
        reason = "off_shift"
        since = min((t for a in staffed if (t := a.next_shift_start(at)) is not None), default=at)
    state.queue[lead.lead_id] = Waiting(lead, attempt, offered, since, since, True, at)
    out: list[Output] = [(ASSIGNMENT, _step(lead, "queued", attempt, at, now, reason=reason, decision=decision))]
    if not announced:
        out.insert(0, (LEAD, evolve(lead, routing_status="queued", routing_reason=reason, agent_id=None,
                                    routed_at=at)))
    return out


def _waited(w: Waiting, at: datetime) -> dict:
    return {"waited_seconds": round((at - (w.queued_at or w.since)).total_seconds(), 3)}


def drain(ref: ReferenceData, state: TeamState, at: datetime, now: datetime, rules: Rules) -> list[Output]:
    """Offer waiting leads, highest tier then oldest first, while their teams have free agents."""
    out: list[Output] = []
    if not state.queue:
        return out
    load = state.load()
    open_teams = {t for t in {w.lead.team for w in state.queue.values()}
                  if screen(ref, state, t, at, (), load, rules.caps)[0]}
    if not open_teams:  # the common case while leads wait: nobody free in any of their teams
        return out
    blocked: set[tuple[str, tuple[str, ...]]] = set()  # (team, offered) found without a free agent
    for w in sorted((w for w in state.queue.values() if w.lead.team in open_teams), key=Waiting.order):
        if (w.lead.team, w.offered) in blocked:
            continue
        if not screen(ref, state, w.lead.team, at, w.offered, caps=rules.caps)[0]:
            blocked.add((w.lead.team, w.offered))
            continue
        del state.queue[w.lead.lead_id]
        out.append((ASSIGNMENT, _step(w.lead, "dequeued", w.attempt, at, now, reason="agent_free",
                                      decision=_waited(w, at))))
        action = "assigned" if w.attempt == 1 else "reassigned"
        out.extend(_offer(ref, state, w.lead, at, now, rules, w.attempt, w.offered, action, announced=w.announced))
    return out


def dispatch_lead(ref: ReferenceData, state: TeamState, lead: Lead, at: datetime, now: datetime,
                  rules: Rules) -> list[Output]:
    """A newly routed lead (``lead.team`` set) at the dispatcher's time ``at``: first what fell due before, then
    offer it to the next free agent, queue it, or manual review."""
    if lead.lead_id in state.pending or lead.lead_id in state.queue:  # a replayed lead: already being handled
        return []
    out = advance(ref, state, at, now, rules)
    return out + _offer(ref, state, lead, at, now, rules, 1, (), "assigned")


def _reassign(ref: ReferenceData, state: TeamState, p: Pending, at: datetime, now: datetime, rules: Rules,
              reason: str) -> list[Output]:
    del state.pending[p.lead.lead_id]
    out = _offer(ref, state, p.lead, at, now, rules, p.attempt + 1, p.offered, "reassigned", reason, announced=True)
    if p.lead.lead_id not in state.pending and p.lead.lead_id not in state.queue:
        state.closed[p.lead.lead_id] = at
    return out


def next_wake(ref: ReferenceData, state: TeamState, rules: Rules) -> datetime | None:
    """The next instant the desk must act without an input: an offer's SLA deadline, a waiting lead's queue
    limit or overflow, or (with leads waiting) the next shift start of an agent of their teams."""
    times = [p.deadline for p in state.pending.values() if p.deadline is not None]
    queue = state.queue.values()
    if queue:
        times.append(min(w.since for w in queue) + rules.max_queue)
    if queue and rules.overflow is not None and ref.overflow:
        moving = [w.team_since for w in queue if w.lead.team in ref.overflow]
        if moving:
            times.append(min(moving) + rules.overflow)
    teams = {w.lead.team for w in queue}
    if state.time is not None:
        for team in teams:
            for a in ref.agents.get(team, ()):
                if a.available and not a.on_shift(state.time) and (t := a.next_shift_start(state.time)):
                    times.append(t)
    return min(times, default=None)


def _wake(ref: ReferenceData, state: TeamState, t: datetime, now: datetime, rules: Rules) -> list[Output]:
    """Everything due at ``t``: offers expire (the agent may go offline), waits time out or overflow, and the
    queue is offered to whoever is free."""
    out: list[Output] = []
    state.time = t if state.time is None else max(state.time, t)
    for p in sorted((p for p in state.pending.values() if p.deadline is not None and p.deadline <= t),
                    key=lambda p: p.deadline):
        out.append((ASSIGNMENT, _step(p.lead, "expired", p.attempt, p.deadline, now, agent_id=p.agent_id,
                                      reason="sla_expired")))
        state.missed[p.agent_id] = state.missed.get(p.agent_id, 0) + 1
        if state.missed[p.agent_id] >= rules.max_missed and state.status.get(p.agent_id) is None:
            state.status[p.agent_id] = "offline"
            out.append((AGENT_STATUS, AgentStatus(p.agent_id, p.lead.team, "offline", "missed_offers", None,
                                                  p.deadline, now)))
        out.extend(_reassign(ref, state, p, p.deadline, now, rules, "sla_expired"))
    for w in sorted(state.queue.values(), key=Waiting.order):
        if w.since + rules.max_queue <= t:
            del state.queue[w.lead.lead_id]
            at = w.since + rules.max_queue
            state.closed[w.lead.lead_id] = at
            out.append((ASSIGNMENT, _step(w.lead, "dequeued", w.attempt, at, now, reason="queue_timeout",
                                          decision=_waited(w, at))))
            out.extend(manual_review(w.lead, "queue_timeout", at, now, w.attempt, first=False))
        elif (rules.overflow is not None and (to := ref.overflow.get(w.lead.team))
              and w.team_since + rules.overflow <= t):
            at = w.team_since + rules.overflow
            out.append((ASSIGNMENT, _step(w.lead, "overflowed", w.attempt, at, now, reason=f"overflow_to:{to}",
                                          decision={"from": w.lead.team, "to": to, **_waited(w, at)})))
            w.lead, w.offered, w.team_since = evolve(w.lead, team=to), (), at
    out.extend(drain(ref, state, t, now, rules))
    return out


def advance(ref: ReferenceData, state: TeamState, until: datetime, now: datetime, rules: Rules) -> list[Output]:
    """Everything due up to ``until``, in time order (each step dated when it fell due)."""
    out: list[Output] = []
    while (t := next_wake(ref, state, rules)) is not None and t <= until:
        out.extend(_wake(ref, state, t, now, rules))
    state.time = until if state.time is None else max(state.time, until)
    state.prune(until)
    return out


def expire(ref: ReferenceData, state: TeamState, team: str, at: datetime, now: datetime,
           rules: Rules) -> list[Output]:
    """What falls due up to ``at`` (kept under its old name: the SLA timer's entry point)."""
    return advance(ref, state, at, now, rules)


def _return(ref: ReferenceData, state: TeamState, agent_id: str) -> None:
    """Fair returns: an agent back from away or offline starts at the team's average credit (0 under smooth
    round robin), not with the credit it held when it left, so it is not handed a run of leads."""
    agent = ref.agent(agent_id)
    others = [state.current[a.agent_id] for a in ref.agents.get(agent.team_id, ()) if a.agent_id != agent_id
              and a.agent_id in state.current and a.agent_id not in state.status] if agent else []
    state.current[agent_id] = sum(others) / len(others) if others else 0.0
    state.missed.pop(agent_id, None)


def on_agent_event(ref: ReferenceData, state: TeamState, team: str, ev: AgentEvent, now: datetime,
                   rules: Rules, at: datetime | None = None) -> list[Output]:
    """Apply an agent's event at the dispatcher's time ``at`` (bounded: the event's time; streaming: processing
    time): what fell due before, then status changes, acceptance, rejection (then re-assignment), closing;
    then the queue is offered to whoever is free."""
    if ev.event_id in state.seen_events:
        return []
    state.seen_events[ev.event_id] = ev.at
    at = ev.at if at is None else at
    agent = ref.agent(ev.agent_id)
    team = agent.team_id if agent is not None else team
    out = advance(ref, state, at, now, rules)
    out.extend(_apply(ref, state, team, ev, now, rules))
    out.extend(drain(ref, state, at, now, rules))
    return out


def _apply(ref: ReferenceData, state: TeamState, team: str, ev: AgentEvent, now: datetime,
           rules: Rules) -> list[Output]:
    if ev.type in ("online", "away", "offline"):
        if state.status.get(ev.agent_id, "online") == ev.type:
            return []  # no change (presence heartbeats): nothing to record
        if ev.type == "online":
            state.status.pop(ev.agent_id, None)
            _return(ref, state, ev.agent_id)
        else:
            state.status[ev.agent_id] = ev.type
        return [(AGENT_STATUS, AgentStatus(ev.agent_id, team, ev.type, "agent_event", ev.event_id, ev.at, now))]
    lead_id = ev.lead_id or ""
    if ev.type == "closed":
        held = state.accepted.get(lead_id)
        if held is None or held[0] != ev.agent_id:
            reason = "not_assigned_agent" if held is not None or lead_id in state.pending else \
                "not_accepted" if lead_id in state.closed or lead_id in state.queue else "unknown_lead"
            return [(ASSIGNMENT, _step(None, "ignored", 0, ev.at, now, agent_id=ev.agent_id, reason=reason,
                                       event_id=ev.event_id, lead_id=lead_id, team=team))]
        del state.accepted[lead_id]
        return [(ASSIGNMENT, _step(None, "closed", 0, ev.at, now, agent_id=ev.agent_id, event_id=ev.event_id,
                                   lead_id=lead_id, team=team))]
    p = state.pending.get(lead_id)
    if p is None or p.agent_id != ev.agent_id:
        reason = ("not_assigned_agent" if p is not None else "queued" if lead_id in state.queue
                  else "not_pending" if lead_id in state.closed else "unknown_lead")
        return [(ASSIGNMENT, _step(p.lead if p else None, "ignored", p.attempt if p else 0, ev.at, now,
                                   agent_id=ev.agent_id, reason=reason, event_id=ev.event_id, lead_id=lead_id,
                                   team=team))]
    state.missed.pop(ev.agent_id, None)  # an answer breaks a run of missed offers
    if ev.type == "accepted":
        del state.pending[lead_id]
        state.closed[lead_id] = ev.at
        state.accepted[lead_id] = (ev.agent_id, ev.at, p.attempt)
        return [(ASSIGNMENT, _step(p.lead, "accepted", p.attempt, ev.at, now, agent_id=ev.agent_id,
                                   event_id=ev.event_id))]
    out: list[Output] = [(ASSIGNMENT, _step(p.lead, "rejected", p.attempt, ev.at, now, agent_id=ev.agent_id,
                                            reason="agent_rejected", event_id=ev.event_id))]
    return out + _reassign(ref, state, p, ev.at, now, rules, "agent_rejected")


def on_person_event(ref: ReferenceData, state: TeamState, pe: PersonEvent, at: datetime, now: datetime,
                    rules: Rules) -> list[Output]:
    """The owner first: a new event of a person whose lead an agent of this desk accepted goes to that agent as an
    ``update`` delivery when the agent is available; otherwise the person is offered through the normal rules (the
    next free agent, or the queue). A merge carries the absorbed lead's owner over to the survivor. Desks that do
    not hold the lead do nothing."""
    if pe.event_id in state.seen_events:
        return []
    state.seen_events[pe.event_id] = pe.at
    out = advance(ref, state, at, now, rules)
    held = state.accepted.get(pe.lead_id)
    if pe.merged_into is not None:
        if held is not None:
            del state.accepted[pe.lead_id]
            state.accepted.setdefault(pe.merged_into, held)  # the survivor's own owner, if any, stays
        return out
    if held is None or pe.update is None:
        return out
    owner_id, _, attempt = held
    owner = ref.agent(owner_id)
    team = owner.team_id if owner is not None else pe.update.team
    lead = evolve(pe.update, team=team, territory=pe.update.territory, agent_id=owner_id)
    why = skip_reason(state, owner, at, (), Counter()) if owner is not None else "unavailable"
    if why is None:
        return [*out, (DELIVERY, evolve(lead, routing_status="update")),
                (ASSIGNMENT, _step(lead, "owner_update", attempt, at, now, agent_id=owner_id,
                                   reason="owner_first", event_id=pe.event_id))]
    del state.accepted[pe.lead_id]  # the owner cannot take it now: the person is offered afresh
    out.append((ASSIGNMENT, _step(lead, "owner_unavailable", attempt, at, now, agent_id=owner_id, reason=why,
                                  event_id=pe.event_id)))
    out.extend(_offer(ref, state, evolve(lead, agent_id=None), at, now, rules, attempt + 1, (), "reassigned",
                      "owner_unavailable", announced=True))
    return out
