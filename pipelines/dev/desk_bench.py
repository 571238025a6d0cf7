"""Microbenchmark of the desk dispatcher (pure functions, no Beam): microseconds per lead and per agent event,
with an empty queue and with a long one, and the size of a desk's pickled state (what Beam writes per element).

    python -m pipelines.dev.desk_bench [--leads 5000] [--waiting 0,200,1000]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from datetime import UTC, datetime, timedelta

from schemas.records import Lead
from transforms.reference import load_reference
from transforms.routing import AgentEvent, Rules, TeamState, dispatch_lead, on_agent_event, route_lead

T0 = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # Wednesday 10:00 in New York
TEAM = "us-east-sales"


def _lead(i: int, at: datetime) -> Lead:
    return Lead(lead_id=f"b-{i:06d}", identity_key=f"b:{i}", phone_e164=None, email=None, full_name=None,
                first_name=None, last_name=None, country="US", postal_code=None, city=None, state="NY",
                property_address=None, message=None, primary_source="meta_lead_ads", primary_provider="meta_lead_ads",
                first_seen_at=at, is_test=False, processed_at=at, priority_tier=("hot", "warm", "cold")[i % 3])


def measure(n: int, waiting: int) -> dict:
    """``n`` leads through a desk whose agents are all busy elsewhere (``waiting`` leads queued first), then the
    same number of agent events (accept / close) while the queue drains."""
    ref, rules = load_reference(), Rules(timedelta(seconds=120), max_queue=timedelta(days=1))
    state = TeamState(status={a.agent_id: "away" for a in ref.agents[TEAM]})
    for i in range(waiting):
        dispatch_lead(ref, state, route_lead(ref, _lead(10**5 + i, T0)), T0, T0, rules)
    state.status.clear()
    leads = [route_lead(ref, _lead(i, T0 + timedelta(milliseconds=i))) for i in range(n)]
    t = time.perf_counter()
    for lead in leads:
        dispatch_lead(ref, state, lead, lead.first_seen_at, T0, rules)
    per_lead = (time.perf_counter() - t) / n * 1e6
    at = T0 + timedelta(seconds=10)
    events = 0
    t = time.perf_counter()
    for i, (lid, p) in enumerate(list(state.pending.items())[:n]):
        on_agent_event(ref, state, TEAM, AgentEvent(f"a{i}", p.agent_id, "accepted", at, lid), T0, rules)
        on_agent_event(ref, state, TEAM, AgentEvent(f"c{i}", p.agent_id, "closed", at, lid), T0, rules)
        events += 2
    per_event = (time.perf_counter() - t) / max(events, 1) * 1e6
    return {"leads": n, "waiting_before": waiting, "queue_after_leads": len(state.queue),
            "us_per_lead": round(per_lead, 1), "us_per_agent_event": round(per_event, 1), "agent_events": events,
            "state_bytes": len(pickle.dumps(state, pickle.HIGHEST_PROTOCOL))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.dev.desk_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=5000)
    ap.add_argument("--waiting", default="0,200,1000", help="queue lengths to start from (comma-separated)")
    args = ap.parse_args(argv)
    for waiting in (int(w) for w in args.waiting.split(",")):
        print(json.dumps(measure(args.leads, waiting)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
