"""``make bench``: measured speed and memory, side by side in one run.

Bounded mode over generated messages (default 100,000), each figure measured in its own process:

- ``loop_parse_normalize``: a plain Python loop calling the same decode/parse/normalize functions
  the pipeline calls: the per-core reference for that code.
- ``loop_full``: the loop plus dedup (same decision function) and JSON serialization of every row:
  the per-core reference for all the work the pipeline does.
- ``pipeline_1``: the pipeline on the DirectRunner, in-process.
- ``pipeline_2mp``: the pipeline with ``--direct_num_workers=2 --direct_running_mode=multi_processing``.
- per-stage cost in microseconds per lead (decode+parse, normalize, dedup, enrich, route, assign, serialize),
  and the assignment spread per team (leads per agent / capacity, max/min), with working hours and
  with every agent on shift (the weighted round robin alone).

Peak memory is the peak RSS of the measuring process and its children. Results go to
``.bench/results.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH_DIR = Path(".bench")


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB


def measure_loop(input_file: str, full: bool) -> dict:
    """Runs in a child process: the plain loop over the same functions the pipeline uses."""
    from pipelines.lead_pipeline import to_json_line
    from transforms.dedup import decide_all
    from transforms.messages import InputLineError, message_from_json_line
    from transforms.normalize import NormalizeError, normalize_unit
    from transforms.parse import RejectedMessage, parse_message
    from transforms.parsers.base import ParseConfig
    from transforms.sources import SourceRegistry

    config = ParseConfig(registry=SourceRegistry.from_csv())
    stage_s = defaultdict(float)
    clock = time.perf_counter
    started = clock()
    messages = leads = dead = 0
    people = defaultdict(list)
    with open(input_file, "rb") as f:
        for line in f:
            messages += 1
            t0 = clock()
            try:
                units = parse_message(message_from_json_line(line.rstrip(b"\n")), config, 1_000_000)
            except (InputLineError, RejectedMessage):
                dead += 1
                units = []
            t1 = clock()
            stage_s["decode_parse"] += t1 - t0
            for unit in units:
                try:
                    lead = normalize_unit(unit, "US")
                except NormalizeError:
                    dead += 1
                    continue
                leads += 1
                if full:
                    people[lead.identity_key].append(lead)
            stage_s["normalize"] += clock() - t1
    rows = 0
    spread = None
    if full:
        t0 = clock()
        decisions = []
        for events in people.values():
            decisions.extend(decide_all(None, events)[1])
        t1 = clock()
        stage_s["dedup"] += t1 - t0
        new_leads = sorted((d.lead for d in decisions if d.lead is not None), key=lambda x: x.first_seen_at)
        routed_rows, spread = enrich_route_assign(new_leads, stage_s, clock)
        t1 = clock()
        for d in decisions:
            for rec in (d.event, d.history):
                if rec is not None:
                    to_json_line(rec)
                    rows += 1
        for rec in routed_rows:
            to_json_line(rec)
            rows += 1
        stage_s["serialize"] += clock() - t1
    elapsed = clock() - started
    # enrich/route/assign run once per new lead; report them per lead like the other stages
    return {"messages": messages, "units_ok": leads, "dead_letters": dead, "seconds": elapsed,
            "messages_per_s": messages / elapsed, "rows": rows,
            "stage_us_per_lead": {k: v / max(leads, 1) * 1e6 for k, v in stage_s.items()},
            "new_leads": len(new_leads) if full else None,
            "stage_us_per_new_lead": {k: v / max(len(new_leads), 1) * 1e6 for k, v in stage_s.items()
                                      if k in ("enrich", "route", "assign")} if full else None,
            "assignment_spread": spread, "peak_rss_mb": _peak_rss_mb()}


def enrich_route_assign(leads, stage_s, clock) -> tuple[list, dict]:
    """The routing stage's pure functions over new leads (time order), timed per stage; and the spread of
    assignments per agent weighted by capacity, with working hours (real lead times) and without."""
    from transforms.enrich import enrich_lead
    from transforms.reference import load_reference
    from transforms.routing import LEAD, TeamState, dispatch_lead, pick_agent, route_lead

    ref = load_reference()
    states: dict[str, TeamState] = defaultdict(TeamState)
    fair_states: dict[str, TeamState] = defaultdict(TeamState)
    rows, per_agent, fair = [], defaultdict(int), defaultdict(int)
    for lead in leads:
        t0 = clock()
        lead = enrich_lead(lead, ref, 0.3)
        t1 = clock()
        lead = route_lead(ref, lead)
        t2 = clock()
        if lead.team is not None:
            for kind, rec in dispatch_lead(ref, states[lead.team], lead, lead.first_seen_at, lead.first_seen_at,
                                           None):
                if kind == LEAD:
                    rows.append(rec)
                    if rec.agent_id:
                        per_agent[rec.agent_id] += 1
        else:
            rows.append(lead)
        t3 = clock()
        stage_s["enrich"] += t1 - t0
        stage_s["route"] += t2 - t1
        stage_s["assign"] += t3 - t2
        if lead.team is not None:  # every available agent on shift: the round robin alone
            agents = [a for a in ref.agents.get(lead.team, ()) if a.available]
            fair[pick_agent(fair_states[lead.team], agents).agent_id] += 1
    return rows, {"with_working_hours": _spread(ref, per_agent), "all_on_shift": _spread(ref, fair)}


def _spread(ref, counts: dict[str, int]) -> dict:
    """Per team: leads per agent divided by capacity; max/min of that (1.0 = exactly proportional)."""
    teams = {}
    for team, agents in ref.agents.items():
        weighted = {a.agent_id: counts.get(a.agent_id, 0) / a.capacity for a in agents if a.available}
        if len(weighted) < 2 or not any(weighted.values()):
            continue
        lo, hi = min(weighted.values()), max(weighted.values())
        teams[team] = {"leads": sum(counts.get(a.agent_id, 0) for a in agents),
                       "per_capacity": {k: round(v, 1) for k, v in weighted.items()},
                       "max_over_min": round(hi / lo, 3) if lo else None}
    ratios = [t["max_over_min"] for t in teams.values() if t["max_over_min"]]
    return {"teams": teams, "worst_max_over_min": max(ratios) if ratios else None}


def measure_pipeline(input_file: str, extra_args: list[str]) -> dict:
    """Runs in a child process: the lead pipeline, timed, with its peak memory."""
    from pipelines import lead_pipeline

    out = tempfile.mkdtemp(prefix="leadflow-bench-")
    started = time.perf_counter()
    lead_pipeline.run([f"--input_file={input_file}", f"--output_dir={out}", *extra_args])
    elapsed = time.perf_counter() - started
    counts = {t: _count_lines(os.path.join(out, f"{t}.jsonl")) for t in ("lead_events", "dead_letters", "leads")}
    messages = _count_lines(input_file)
    return {"messages": messages, "seconds": elapsed, "messages_per_s": messages / elapsed, "rows": counts,
            "peak_rss_mb": _peak_rss_mb(), "output_dir": out}


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _child(kind: str, input_file: str, extra: list[str]) -> dict:
    """Run one measurement in a fresh interpreter so timings and peak RSS do not mix."""
    cmd = [sys.executable, "-m", "pipelines.bench", "--_child", kind, "--input_file", input_file, "--", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Leadflow benchmarks")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--input_file", help="use this file instead of generating one")
    ap.add_argument("--skip_multiprocess", action="store_true")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        if args._child.startswith("loop"):
            result = measure_loop(args.input_file, full=args._child == "loop_full")
        else:
            result = measure_pipeline(args.input_file, args.extra)
        print(json.dumps(result))
        return 0

    BENCH_DIR.mkdir(exist_ok=True)
    input_file = args.input_file
    if not input_file:
        from pipelines import generate

        input_file = str(BENCH_DIR / f"messages-{args.messages}.jsonl")
        if not Path(input_file).exists():
            print(f"generating {args.messages} messages -> {input_file} ...", flush=True)
            generate.write(input_file, args.messages, seed=1, bad_kinds=tuple(
                k for k in generate.BAD_KINDS if k != "oversize"))
    size_mb = Path(input_file).stat().st_size / 1e6
    runs = [("loop_parse_normalize", []), ("loop_full", []), ("pipeline_1", [])]
    if not args.skip_multiprocess:
        runs.append(("pipeline_2mp", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]))
    results = {}
    for name, extra in runs:
        print(f"measuring {name} ...", flush=True)
        results[name] = _child(name.split("_")[0] if name.startswith("pipeline") else name, input_file, extra)
        print(f"  {results[name]['messages_per_s']:.0f} messages/s, peak RSS {results[name]['peak_rss_mb']:.0f} MB",
              flush=True)
    ref = results["loop_full"]["messages_per_s"]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "input": {"file": input_file, "messages": results["pipeline_1"]["messages"], "size_mb": round(size_mb, 1)},
        "results": results,
        "ratios": {
            f"{name}_vs_loop_full": round(r["messages_per_s"] / ref, 3) for name, r in results.items()
        },
    }
    (BENCH_DIR / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'run':<24}{'messages/s':>12}{'seconds':>10}{'peak RSS MB':>14}{'vs loop_full':>14}")
    for name, r in results.items():
        print(f"{name:<24}{r['messages_per_s']:>12.0f}{r['seconds']:>10.1f}{r['peak_rss_mb']:>14.0f}"
              f"{r['messages_per_s'] / ref:>14.2f}")
    full = results["loop_full"]
    print("\nper-stage cost (µs per lead, plain loop; enrich/route/assign also per new lead):")
    for stage, us in full["stage_us_per_lead"].items():
        per_new = (full.get("stage_us_per_new_lead") or {}).get(stage)
        print(f"  {stage:<14}{us:>8.1f}" + (f"{per_new:>10.1f} per new lead" if per_new is not None else ""))
    spread = full.get("assignment_spread")
    if spread:
        print(f"\nassignment spread over {full['new_leads']} new leads (leads per agent / capacity, max/min per team):")
        for label, s in spread.items():
            cells = ", ".join(f"{team} {t['max_over_min']}" for team, t in s["teams"].items())
            print(f"  {label:<20} worst {s['worst_max_over_min']}: {cells}")
    print(f"\nwritten: {BENCH_DIR / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
