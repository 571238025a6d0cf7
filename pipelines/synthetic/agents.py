"""Simulated agents: agent events (accept, reject, status changes) for leads a run assigned.

For the bundled sample, the demo and tests: reads the ``leads`` (and ``lead_assignments``) a run wrote
and writes agent-event messages as input-file lines, the way an agent desk would send them:
``accept`` share accepted within the SLA (and closed 10-60 minutes later, freeing the agent's capacity),
``reject`` share rejected, the rest left to expire (so the SLA re-assigns them and sets the agent offline), a
presence heartbeat ('online') per agent every half hour that
brings agents set away back; plus a few status changes, one event for an unknown lead and one malformed
event (a dead letter).

    python -m pipelines.synthetic.agents --leads out/leads.jsonl --out agent_events.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import datetime, timedelta
from typing import Any

from transforms.assign import agent_event_json


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _line(message_id: str, data: str, at: datetime) -> str:
    return json.dumps({"message_id": message_id, "publish_time": at.isoformat().replace("+00:00", "Z"),
                       "attributes": {"source": "agent_desk"}, "data": data})


def simulate(leads: list[dict[str, Any]], seed: int = 7, accept: float = 0.6, reject: float = 0.1,
             sla_seconds: float = 120.0, heartbeat_minutes: float = 30.0) -> list[str]:
    """Agent-event input lines for the assigned leads (deterministic for a seed)."""
    rng = random.Random(seed)
    closing = random.Random(seed + 1)  # its own stream: the other events stay those of earlier versions
    lines: list[str] = []
    assigned = sorted((r for r in leads if r.get("agent_id")), key=lambda r: (r["routed_at"], r["lead_id"]))
    for i, lead in enumerate(assigned):
        roll, at = rng.random(), _time(lead["routed_at"])
        if roll < accept:
            kind, delay = "accepted", rng.uniform(5, sla_seconds * 0.8)
        elif roll < accept + reject:
            kind, delay = "rejected", rng.uniform(5, sla_seconds * 0.5)
        else:
            continue  # no answer: the SLA expires, the lead is re-assigned and the agent set away
        t = at + timedelta(seconds=delay)
        lines.append(_line(f"agent-{i}", agent_event_json(f"ev-{i}", lead["agent_id"], kind, t, lead["lead_id"]), t))
        if kind == "accepted":  # worked, then closed: frees the agent's capacity (max_open)
            done = t + timedelta(minutes=closing.uniform(10, 60))
            lines.append(_line(f"agent-{i}-closed", agent_event_json(f"ev-{i}-c", lead["agent_id"], "closed", done,
                                                                     lead["lead_id"]), done))
    if assigned:
        first, last = _time(assigned[0]["routed_at"]), _time(assigned[-1]["routed_at"])
        agents = sorted({r["agent_id"] for r in assigned})
        # the agent app's presence heartbeat: 'online' every half hour brings agents set away back
        t, k = first, 0
        while t <= last:
            for agent in agents:
                lines.append(_line(f"hb-{k}-{agent}", agent_event_json(f"hb-{k}-{agent}", agent, "online", t), t))
            t, k = t + timedelta(minutes=heartbeat_minutes), k + 1
        for j, agent in enumerate(agents[:3]):  # a few agents go away and come back
            t = first + (last - first) * (j + 1) / 4
            lines.append(_line(f"status-{j}-away", agent_event_json(f"st-{j}-a", agent, "away", t), t))
            t2 = t + timedelta(minutes=30)
            lines.append(_line(f"status-{j}-online", agent_event_json(f"st-{j}-o", agent, "online", t2), t2))
        lines.append(_line("unknown-lead", agent_event_json("ev-unknown", agents[0], "accepted", last,
                                                            "00000000-0000-0000-0000-000000000000"), last))
        lines.append(_line("malformed", json.dumps({"agent_id": agents[0], "type": "teleported"}), last))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.synthetic.agents", description=__doc__.splitlines()[0])
    ap.add_argument("--leads", required=True, help="leads.jsonl written by a bounded run")
    ap.add_argument("--out", required=True, help="agent-event input file to write")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--accept", type=float, default=0.6)
    ap.add_argument("--reject", type=float, default=0.1)
    args = ap.parse_args(argv)
    with open(args.leads, encoding="utf-8") as f:
        leads = [json.loads(line) for line in f if line.strip()]
    lines = simulate(leads, args.seed, args.accept, args.reject)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    print(f"wrote {len(lines)} agent events for {sum(1 for r in leads if r.get('agent_id'))} assigned leads "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
