"""Simulate a day at a sales desk and compare today's routing rules with the desk rules (queue, caps, ...).

    leadflow simulate-desk [--leads 900] [--seed 7] [--out DIR] [--json]

A day of leads with an hourly arrival curve (quiet nights, a morning and an afternoon peak, New York time) and
20 agents on shifts in two teams, each agent with its own habit: how often it accepts, rejects or stays silent,
how fast it answers, how long it works a lead before closing it, a lunch break, and how long it takes to come
back after being set offline. Agents answer the offers they receive, so the agent events depend on the rules:
for each rule set the day is first played against the dispatcher's pure functions (transforms.routing) to learn
which events the agents send, and then those leads and events run through the bounded routing stage
(``RouteAndAssign`` on the DirectRunner), whose ``lead_assignments`` rows give every figure printed:
time to first offer and to acceptance (p50 / p90), queue waits, manual review by reason, and each agent's
worst open load against its cap. The played day and the pipeline must make the same decisions; the command
says so (and fails when they do not).

Rule sets: ``today`` (no queue: manual review when nobody is free; capacity only weighs the round robin) and
``desk`` (the waiting queue, ``max_open`` caps, fair returns, missed offers set offline).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.io import WriteTablesToFiles
from pipelines.ops.summary import read_table
from schemas.records import Lead
from transforms.assign import RouteAndAssign, RoutingConfig, agent_event_json
from transforms.enrich import ReferenceConfig
from transforms.messages import InputMessage
from transforms.reference import load_reference
from transforms.routing import (
    AGENT_STATUS,
    ASSIGNMENT,
    DELIVERY,
    AgentEvent,
    TeamState,
    advance,
    dispatch_lead,
    next_wake,
    on_agent_event,
    route_lead,
)

DAY = datetime(2026, 11, 18, 5, 0, tzinfo=UTC)  # Wednesday 00:00 in New York
SLA_SECONDS, MAX_QUEUE_SECONDS = 120.0, 900.0
# share of the day's leads arriving in each New York hour: quiet nights, peaks at 10-12 and 14-17
HOURLY = [1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 8, 8, 9, 10, 9, 7, 6, 5, 4, 3, 2, 1]
SHIFTS = {"early": ("07:00", "15:00"), "day": ("09:00", "17:00"), "late": ("12:00", "20:00"),
          "evening": ("15:00", "23:00")}
TEAMS = {"east-sales": "NY;NJ;CT;MA;PA", "west-sales": "CA;WA;OR;NV;AZ"}
RELEASES = ("rejected", "expired", "closed")
RULE_SETS = {"today": dict(waiting_queue=False, caps=False), "desk": dict(waiting_queue=True, caps=True)}


@dataclass(frozen=True)
class Habit:
    accept: float
    reject: float  # the rest of the offers meet silence (the offer expires)
    answer_s: tuple[float, float]  # seconds to answer (uniform)
    work_min: tuple[float, float]  # minutes from acceptance to closing
    comeback_min: tuple[float, float]  # minutes until an agent set offline comes back online


def desk_reference(directory: Path, rng: random.Random) -> dict[str, Habit]:
    """Write a reference-data directory for the simulated desk: 2 teams, 20 agents on shifts; -> habits."""
    src = resources.files("transforms.reference_data")  # the bundled source registry, as it is
    (directory / "sources.csv").write_text(src.joinpath("sources.csv").read_text("utf-8"), "utf-8")
    (directory / "territories.csv").write_text(
        "territory_id,country,match_type,match_values,description\n"
        + "".join(f"{t},US,state,{states},{t}\n" for t, states in TEAMS.items()), "utf-8")
    (directory / "teams.csv").write_text(
        "team_id,territory_id,priority_tier,display_name,overflow_team\n"
        + "".join(f"{t},{t},*,{t},\n" for t in TEAMS), "utf-8")
    lines = ["agent_id,team_id,display_name,capacity,timezone,work_days,work_start,work_end,available,max_open"]
    habits: dict[str, Habit] = {}
    shifts = list(SHIFTS)
    for i in range(20):
        team = "east-sales" if i < 12 else "west-sales"
        tz = "America/New_York" if team == "east-sales" else "America/Los_Angeles"
        start, end = SHIFTS[shifts[i % len(shifts)]]
        capacity = rng.choice([1, 2, 2, 3])
        agent = f"agt-{i + 1:02d}"
        lines.append(f"{agent},{team},{agent},{capacity},{tz},Mon-Fri,{start},{end},true,{capacity + 1}")
        accept = rng.uniform(0.55, 0.9)
        habits[agent] = Habit(accept, rng.uniform(0.03, 0.12) * (1 - accept) / 0.3, (10, rng.uniform(40, 110)),
                              (rng.uniform(5, 15), rng.uniform(20, 60)), (3, rng.uniform(5, 20)))
    (directory / "agents.csv").write_text("\n".join(lines) + "\n", "utf-8")
    return habits


def day_of_leads(n: int, rng: random.Random) -> list[Lead]:
    """``n`` leads over the day, hour by the HOURLY curve, east or west, a third of them hot."""
    weights = [h / sum(HOURLY) for h in HOURLY]
    leads = []
    for i in range(n):
        hour = rng.choices(range(24), weights)[0]
        at = DAY + timedelta(hours=hour, seconds=rng.uniform(0, 3600))
        state = rng.choice(["NY", "NJ", "MA"]) if rng.random() < 0.6 else rng.choice(["CA", "WA", "AZ"])
        tier = rng.choices(["hot", "warm", "cold"], [0.2, 0.35, 0.45])[0]
        leads.append(Lead(
            lead_id=f"sim-{i:05d}", identity_key=f"sim:{i}", phone_e164=None, email=None, full_name=None,
            first_name=None, last_name=None, country="US", postal_code=None, city=None, state=state,
            property_address=None, message=None, primary_source="meta_lead_ads", primary_provider="meta_lead_ads",
            first_seen_at=at, is_test=False, processed_at=at, priority_tier=tier, score=0.5, score_source="sim"))
    return sorted(leads, key=lambda lead: (lead.first_seen_at, lead.lead_id))


class Day:
    """The day played against the dispatcher: agents answer what they are offered; -> the agent events."""

    def __init__(self, ref, habits: dict[str, Habit], config: RoutingConfig, seed: int):
        self.ref, self.habits, self.rules = ref, habits, config.rules(True)
        self.rng = random.Random(seed)
        self.states: dict[str, TeamState] = defaultdict(TeamState)
        self.heap: list[tuple] = []
        self.events: list[AgentEvent] = []
        self.decisions: Counter = Counter()  # what the played day decided, to compare with the pipeline's rows
        self.n = 0

    def _event(self, at: datetime, agent: str, kind: str, lead_id: str | None = None) -> None:
        self.n += 1
        ev = AgentEvent(f"ev-{self.n:06d}", agent, kind, at, lead_id)
        heapq.heappush(self.heap, (at, 1, ev.event_id, "agent", ev))

    def react(self, outputs, at: datetime) -> None:
        self.decisions.update(decision_key(r) for k, r in outputs if k == ASSIGNMENT)
        for kind, record in outputs:
            if kind == DELIVERY and record.routing_status != "update":
                offered_at = record.routed_at if record.routed_at is not None else at
                step = next((r for k, r in outputs if k == ASSIGNMENT and r.lead_id == record.lead_id
                             and r.agent_id == record.agent_id and r.action in ("assigned", "reassigned")), None)
                self._answer(record.agent_id, record.lead_id, step.action_at if step else offered_at)
            elif kind == AGENT_STATUS and record.status == "offline" and record.reason == "missed_offers":
                h = self.habits[record.agent_id]
                self._event(record.changed_at + timedelta(minutes=self.rng.uniform(*h.comeback_min)),
                            record.agent_id, "online")
            elif kind == ASSIGNMENT and record.action == "accepted":
                h = self.habits[record.agent_id]
                self._event(record.action_at + timedelta(minutes=self.rng.uniform(*h.work_min)), record.agent_id,
                            "closed", record.lead_id)

    def _answer(self, agent: str, lead_id: str, offered_at: datetime) -> None:
        h, roll = self.habits[agent], self.rng.random()
        delay = timedelta(seconds=self.rng.uniform(*h.answer_s))
        if delay.total_seconds() >= SLA_SECONDS:
            return
        if roll < h.accept:
            self._event(offered_at + delay, agent, "accepted", lead_id)
        elif roll < h.accept + h.reject:
            self._event(offered_at + delay, agent, "rejected", lead_id)

    def play(self, leads: list[Lead]) -> list[AgentEvent]:
        for lead in leads:
            heapq.heappush(self.heap, (lead.first_seen_at, 0, lead.lead_id, "lead", lead))
        for agent in self.habits:  # a lunch break for everyone, at a staggered hour of their shift
            a = self.ref.agent(agent)
            start = (a.next_shift_start(DAY) or DAY) + timedelta(hours=3, minutes=self.rng.uniform(0, 90))
            self._event(start, agent, "away")
            self._event(start + timedelta(minutes=self.rng.uniform(20, 45)), agent, "online")
        while self.heap:
            at, _, _, kind, item = self.heap[0]
            desk = self.ref.desk(item.team) if kind == "lead" else self.ref.desk(self.ref.agent(item.agent_id).team_id)
            state = self.states[desk]
            wake = next_wake(self.ref, state, self.rules)
            if wake is not None and wake <= at:  # what falls due first, as the pipeline's dispatcher does it
                self.react(advance(self.ref, state, wake, DAY, self.rules), wake)
                continue
            heapq.heappop(self.heap)
            if kind == "lead":
                self.react(dispatch_lead(self.ref, state, item, at, DAY, self.rules), at)
            else:
                self.events.append(item)
                self.react(on_agent_event(self.ref, state, desk, item, DAY, self.rules), at)
        return self.events


def run_pipeline(ref_dir: Path, leads: list[Lead], events: list[AgentEvent], config: RoutingConfig,
                 out: Path) -> None:
    messages = [InputMessage(f"m-{e.event_id}", agent_event_json(e.event_id, e.agent_id, e.type, e.at,
                                                                 e.lead_id).encode(), {}, e.at) for e in events]
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        routed = {"leads": p | "Leads" >> beam.Create(leads),
                  "agent_events": p | "AgentEvents" >> beam.Create(messages)} | "Route" >> RouteAndAssign(config)
        {"lead_assignments": routed["assignment"], "agent_status": routed["agent_status"],
         "manual_review": routed["manual_review"]} | "Write" >> WriteTablesToFiles(str(out))


def decision_key(r) -> tuple:
    get = r.get if isinstance(r, dict) else lambda name: getattr(r, name)
    return get("lead_id"), get("action"), get("attempt"), get("agent_id"), get("reason")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 1)


def figures(out: Path, ref) -> dict[str, Any]:
    """The day's figures from the pipeline's own rows."""
    # at one instant, what frees an agent (a rejection, expiry, closing) comes before the offer it made possible
    steps = sorted(read_table(str(out), "lead_assignments"),
                   key=lambda r: (r["action_at"], r["action"] not in RELEASES, r["attempt"]))
    first_offer, accepted, waits = {}, {}, []
    manual = Counter()
    open_now: dict[str, set] = defaultdict(set)
    worst: Counter = Counter()
    for s in steps:
        lead, at = s["lead_id"], _ts(s["action_at"])
        since = _ts(s["lead_event_time"]) if s["lead_event_time"] else at
        if s["action"] in ("assigned", "reassigned"):
            first_offer.setdefault(lead, (at - since).total_seconds())
            open_now[s["agent_id"]].add(lead)
            worst[s["agent_id"]] = max(worst[s["agent_id"]], len(open_now[s["agent_id"]]))
        elif s["action"] == "accepted":
            accepted.setdefault(lead, (at - since).total_seconds())
        elif s["action"] in RELEASES and s["agent_id"]:
            open_now[s["agent_id"]].discard(lead)
        elif s["action"] == "dequeued":
            waits.append(json.loads(s["decision"])["waited_seconds"])
        elif s["action"] == "manual_review":
            manual[s["reason"]] += 1
    agents = ref.agents_by_id()
    load = sorted(((a, worst[a], agents[a].cap, agents[a].capacity) for a in agents), key=lambda x: -x[1] / x[2])
    offered, got = list(first_offer.values()), list(accepted.values())
    return {
        "leads_offered": len(offered), "leads_accepted": len(got),
        "manual_review": dict(sorted(manual.items())), "manual_review_total": sum(manual.values()),
        "first_offer_p50_s": _pct(offered, 0.5), "first_offer_p90_s": _pct(offered, 0.9),
        "acceptance_p50_s": _pct(got, 0.5), "acceptance_p90_s": _pct(got, 0.9),
        "queued": len(waits), "queue_wait_p50_s": _pct(waits, 0.5), "queue_wait_p90_s": _pct(waits, 0.9),
        "queue_wait_max_s": max(waits, default=None),
        "worst_load": [{"agent": a, "max_open_held": w, "max_open": c, "capacity": k} for a, w, c, k in load[:5]],
        "agents_over_cap": sum(1 for _, w, c, _ in load if w > c),
        "actions": dict(sorted(Counter(s["action"] for s in steps).items())),
    }


def simulate(n_leads: int, seed: int, out: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    ref_dir = out / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    habits = desk_reference(ref_dir, rng)
    ref = load_reference(str(ref_dir))
    leads = [route_lead(ref, lead) for lead in day_of_leads(n_leads, rng)]
    report: dict[str, Any] = {"leads": n_leads, "agents": len(habits), "seed": seed}
    for name, switches in RULE_SETS.items():
        config = RoutingConfig(ReferenceConfig(str(ref_dir)), SLA_SECONDS, streaming=False,
                               max_queue_seconds=MAX_QUEUE_SECONDS, **switches)
        played = Day(ref, habits, config, seed + 1)
        events = played.play(leads)
        run_dir = out / name
        run_pipeline(ref_dir, leads, events, config, run_dir)
        f = figures(run_dir, ref)
        f["agent_events"] = len(events)
        f["pipeline_agrees"] = played.decisions == Counter(
            decision_key(r) for r in read_table(str(run_dir), "lead_assignments"))
        report[name] = f
    return report


def format_report(r: dict[str, Any]) -> str:
    rows = [("manual review (leads)", "manual_review_total"), ("time to first offer p50 s", "first_offer_p50_s"),
            ("time to first offer p90 s", "first_offer_p90_s"), ("time to acceptance p50 s", "acceptance_p50_s"),
            ("time to acceptance p90 s", "acceptance_p90_s"), ("leads accepted", "leads_accepted"),
            ("waits in the queue", "queued"), ("queue wait p50 s", "queue_wait_p50_s"),
            ("queue wait p90 s", "queue_wait_p90_s"), ("agents over their cap", "agents_over_cap")]
    lines = [f"simulated day: {r['leads']} leads, {r['agents']} agents, seed {r['seed']}",
             f"{'':28}{'today':>12}{'desk':>12}"]
    for label, key in rows:
        lines.append(f"{label:28}{r['today'][key]!s:>12}{r['desk'][key]!s:>12}")
    for name in RULE_SETS:
        lines.append(f"{name}: manual review by reason {r[name]['manual_review']}")
        lines.append(f"{name}: the bounded pipeline made the same decisions as the played day: "
                     f"{'yes' if r[name]['pipeline_agrees'] else 'NO'}")
        w = r[name]["worst_load"][0]
        lines.append(f"{name}: worst load {w['agent']} held {w['max_open_held']} open (max_open {w['max_open']}, "
                     f"capacity {w['capacity']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow simulate-desk", description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=900, help="leads in the day (default 900)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None, help="where the runs' tables go (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.leads < 1:
        ap.error("--leads must be at least 1")
    with tempfile.TemporaryDirectory(prefix="desk-sim-") as tmp:
        report = simulate(args.leads, args.seed, Path(args.out) if args.out else Path(tmp))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if all(report[name]["pipeline_agrees"] for name in RULE_SETS) else 1


if __name__ == "__main__":
    sys.exit(main())
