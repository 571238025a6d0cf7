"""Summarize a bounded run: messages in, leads, outcomes per provider, dead letters by reason, and
the accounting check that every input unit ended as exactly one lead event or one dead letter."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from schemas.records import TABLES
from transforms.assign import AGENT_EVENT_STAGE
from transforms.dedup import OUTCOMES
from transforms.messages import InputLineError, message_from_json_line


def read_table(output_dir: str, table: str) -> Iterator[dict[str, Any]]:
    """Rows of ``<output_dir>/<table>.jsonl`` or ``<table>-*.jsonl``."""
    paths = sorted(glob.glob(os.path.join(output_dir, f"{table}.jsonl")) +
                   glob.glob(os.path.join(output_dir, f"{table}-*.jsonl")))
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def summarize(input_file: str, output_dir: str) -> dict[str, Any]:
    """Counts per table and outcome, plus the one-row-per-unit accounting."""
    input_ids: Counter = Counter()
    bad_lines = 0
    with open(input_file, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                input_ids[message_from_json_line(line.rstrip(b"\n")).message_id] += 1
            except InputLineError:
                bad_lines += 1
    events = list(read_table(output_dir, "lead_events"))
    all_dead = list(read_table(output_dir, "dead_letters"))
    dead = [d for d in all_dead if d["stage"] != AGENT_EVENT_STAGE]  # agent events are not lead input
    per_provider: dict[str, Counter] = {}
    for e in events:
        per_provider.setdefault(e["provider"], Counter())[e["outcome"]] += 1
    # Each input message (each delivery) must surface as events or dead letters with its id;
    # CSV rows carry '<message_id>#<row>'.
    out_ids = Counter(row["message_id"].split("#", 1)[0] for row in events + [d for d in dead if d["stage"] != "read"])
    unit_rows = Counter(row["message_id"] for row in events + dead)
    missing = sorted(set(input_ids) - set(out_ids))
    unexpected = sorted(set(out_ids) - set(input_ids))
    # A unit id appears once per delivery of its message: more rows than deliveries is a duplicate.
    duplicated = sorted(u for u, n in unit_rows.items() if "#" not in u and u in input_ids and n > input_ids[u])
    return {
        "messages_in": sum(input_ids.values()) + bad_lines,
        "tables": {t: sum(1 for _ in read_table(output_dir, t)) for t in TABLES},
        "lead_events": len(events),
        "dead_letters": len(dead),
        "outcomes": dict(Counter(e["outcome"] for e in events)),
        "per_provider": {p: dict(c) for p, c in sorted(per_provider.items())},
        "dead_letter_reasons": dict(Counter(f"{d['stage']}/{d['error_type']}" for d in dead).most_common()),
        "read_dead_letters": sum(1 for d in dead if d["stage"] == "read"),
        "agent_event_dead_letters": len(all_dead) - len(dead),
        "assignments": dict(Counter(a["action"] for a in read_table(output_dir, "lead_assignments"))),
        "unreadable_lines": bad_lines,
        "accounting": {"missing_messages": missing[:20], "unexpected_messages": unexpected[:20],
                       "duplicated_units": duplicated[:20],
                       "ok": not missing and not unexpected and not duplicated
                       and bad_lines == sum(1 for d in dead if d["stage"] == "read")},
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"messages in: {s['messages_in']}    lead events: {s['lead_events']}    dead letters: {s['dead_letters']}"
        f"    leads (people): {s['tables']['leads']}",
        "",
        "outcomes per provider:",
        f"  {'provider':<22}" + "".join(f"{o:>23}" for o in OUTCOMES) + f"{'total':>8}",
    ]
    for provider, counts in s["per_provider"].items():
        lines.append(f"  {provider:<22}" + "".join(f"{counts.get(o, 0):>23}" for o in OUTCOMES)
                     + f"{sum(counts.values()):>8}")
    lines.append(f"  {'all':<22}" + "".join(f"{s['outcomes'].get(o, 0):>23}" for o in OUTCOMES)
                 + f"{s['lead_events']:>8}")
    lines += ["", "dead letters by reason (stage/error_type):"]
    lines += [f"  {reason:<40}{n:>6}" for reason, n in s["dead_letter_reasons"].items()] or ["  none"]
    if s["assignments"]:
        lines += ["", "assignment history: " + ", ".join(f"{a}={n}" for a, n in sorted(s["assignments"].items()))
                  + f"    agent-event dead letters: {s['agent_event_dead_letters']}"]
    lines += ["", "rows per table: " + ", ".join(f"{t}={n}" for t, n in s["tables"].items())]
    acc = s["accounting"]
    if acc["ok"]:
        lines.append("accounting: OK - every input message ended as lead events or dead letters, none twice")
    else:
        lines.append(f"accounting: FAILED - missing {acc['missing_messages']}, unexpected "
                     f"{acc['unexpected_messages']}, duplicated {acc['duplicated_units']}")
    return "\n".join(lines)
