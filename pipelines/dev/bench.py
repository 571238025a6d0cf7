"""``make bench``: measured speed and memory, side by side in one run, in one results file.

Sections (each figure measured in one run on the same machine state; ratios where a reference exists):

- **bounded** over generated messages (default 100,000; ``--quick``: 5,000), each in its own process:
  ``loop_parse_normalize`` (a plain Python loop over the same decode/parse/normalize functions the pipeline
  calls), ``loop_full`` (the loop plus dedup, in-process LightGBM scoring, enrich, route, assign and JSON
  serialization of every row: the per-core reference for all the pipeline's work), ``pipeline_1`` (the pipeline
  on the DirectRunner, in-process) and ``pipeline_2mp`` (``--direct_num_workers=2
  --direct_running_mode=multi_processing``); the pipelines score in-process with the same model.
- **stages**: cost in µs per lead in the loop (decode+parse, normalize, dedup, score, enrich, route, assign,
  serialize), and the assignment spread per team (leads per agent / capacity, max/min).
- **memory**: peak RSS of each bounded run (the process and its children); the dedup state per thousand
  persons (the identity store's rows: identifiers, persons and the decision journal, as JSON).
- **scoring**: the BentoML service over HTTP vs in-process LightGBM at batch sizes 1/32/256
  (``pipelines.dev.scorer_bench``).
- **parsing**: time per payload of each parser's hostile shapes beside an ordinary payload of that parser and size,
  at 16 KB, 256 KB and 960 KB, with the growth 256 KB -> 960 KB against the size ratio (``pipelines.dev.parse_bench``).
- **streaming**: publish -> BigQuery-row latency p50/p99 at steady rates on the local stack, stepped up to the
  highest rate sustained without a growing backlog or latency (``pipelines.dev.stream_bench``).

Results go to ``.bench/results.json`` (all sections) and a table on stdout.

    python -m pipelines.dev.bench [--quick] [--messages N] [--skip_stream] [--skip_scorer] [--skip_multiprocess]
    python -m pipelines.dev.bench --stream_only     # re-run the streaming section into the existing results
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


def measure_loop(input_file: str, full: bool, model: dict | None = None) -> dict:
    """Runs in a child process: the plain loop over the same functions the pipeline uses."""
    from pipelines.io import to_json_line
    from transforms.identity import IdentityConfig, Resolver, sort_key
    from transforms.identity_store import MemoryStore
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
        store = MemoryStore()
        resolver = Resolver(store, IdentityConfig())
        decisions = [resolver.decide(lead) for lead in sorted((x for xs in people.values() for x in xs),
                                                              key=sort_key)]
        t1 = clock()
        stage_s["dedup"] += t1 - t0
        dedup_state = identity_state_size(store)
        new_leads = sorted((d.lead for d in decisions if d.lead is not None), key=lambda x: x.first_seen_at)
        score_info = None
        if model:
            new_leads, score_info = score_leads(new_leads, model, stage_s, clock)
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
    per_new = ("score", "enrich", "route", "assign")
    return {"messages": messages, "units_ok": leads, "dead_letters": dead, "seconds": elapsed,
            "messages_per_s": messages / elapsed, "rows": rows,
            "stage_us_per_lead": {k: v / max(leads, 1) * 1e6 for k, v in stage_s.items()},
            "new_leads": len(new_leads) if full else None,
            "stage_us_per_new_lead": {k: v / max(len(new_leads), 1) * 1e6 for k, v in stage_s.items()
                                      if k in per_new} if full else None,
            "assignment_spread": spread, "peak_rss_mb": _peak_rss_mb(),
            "dedup_state": dedup_state if full else None, "scoring": score_info if full else None}



def identity_state_size(store) -> dict:
    """What the identity store keeps (its rows as stored: JSON under keyed hashes), per person and per thousand
    persons; the cache in front of it is bounded separately (``CachedStore.max_rows``)."""
    persons = sum(1 for k in store.rows if k.startswith("p:"))
    size = sum(len(k) + len(v) for k, v in store.rows.items())
    by_kind = {kind: sum(len(k) + len(v) for k, v in store.rows.items() if k.startswith(kind + ":"))
               for kind in ("i", "p", "u")}
    per = size / max(persons, 1)
    return {"keys": persons, "bytes_per_key_mean": round(per, 1), "bytes_per_key_max": None,
            "kb_per_1000_keys": round(per * 1000 / 1024, 1),
            "bytes_by_row_kind": by_kind}


def score_leads(leads: list, model: dict, stage_s, clock, batch: int = 256) -> tuple[list, dict]:
    """In-process LightGBM scoring of the new leads, the pipeline's way: features_for per lead, the booster over
    batches (RunInference batches up to 1,024), then the score and tier on the lead. Model loading is timed
    apart (once per worker)."""
    from scoring.features import features_for
    from scoring.handlers import SOURCE_MODEL, ScoreResult, load_local_scorer
    from transforms.score import with_score

    t0 = clock()
    scorer = load_local_scorer(model["model"], model["store"])
    load_s = clock() - t0
    t0 = clock()
    out = []
    for start in range(0, len(leads), batch):
        chunk = leads[start:start + batch]
        scores = scorer.score([features_for(lead) for lead in chunk])
        out.extend(with_score(lead, ScoreResult(s, SOURCE_MODEL, scorer.model_version), 0.6, 0.3)
                   for lead, s in zip(chunk, scores, strict=True))
    stage_s["score"] += clock() - t0
    return out, {"model": model["model"], "load_seconds": round(load_s, 2), "batch": batch}

def enrich_route_assign(leads, stage_s, clock) -> tuple[list, dict]:
    """The routing stage's pure functions over new leads (time order), timed per stage; and the spread of
    assignments per agent weighted by capacity, with working hours (real lead times) and without."""
    from transforms.enrich import enrich_lead
    from transforms.reference import load_reference
    from transforms.routing import LEAD, Rules, TeamState, dispatch_lead, pick_agent, route_lead

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
            # the bounded pipeline's rules without agent events: nothing can answer, so no queue and no caps
            for kind, rec in dispatch_lead(ref, states[lead.team], lead, lead.first_seen_at, lead.first_seen_at,
                                           Rules(sla=None)):
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
    from infra.local import speedups
    from pipelines import lead_pipeline

    speedups.apply()
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


def _child(kind: str, input_file: str, extra: list[str], model: dict | None = None) -> dict:
    """Run one measurement in a fresh interpreter so timings and peak RSS do not mix."""
    cmd = [sys.executable, "-m", "pipelines.dev.bench", "--_child", kind, "--input_file", input_file]
    if model:
        cmd += ["--_model", json.dumps(model)]
    proc = subprocess.run([*cmd, "--", *extra], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_tool(module: str, args: list[str], result_file: Path) -> dict:
    """Run another benchmark (its output streams through) and read its JSON result."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args])
    if proc.returncode != 0:
        return {"error": f"{module} exited with {proc.returncode}"}
    report = json.loads(result_file.read_text())
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    return report


def _load_avg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Leadflow benchmarks")
    ap.add_argument("--messages", type=int, default=None, help="generated messages (default 100,000; quick 5,000)")
    ap.add_argument("--quick", action="store_true", help="a small run of every section (smoke test)")
    ap.add_argument("--input_file", help="use this file instead of generating one")
    ap.add_argument("--skip_multiprocess", action="store_true")
    ap.add_argument("--skip_scorer", action="store_true", help="no HTTP-vs-in-process scorer section")
    ap.add_argument("--skip_stream", action="store_true", help="no streaming section")
    ap.add_argument("--no_score", action="store_true", help="bounded runs without scoring")
    ap.add_argument("--stream_only", action="store_true",
                    help="re-run only the streaming section into the existing .bench/results.json")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_model", help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        model = json.loads(args._model) if args._model else None
        if args._child.startswith("loop"):
            result = measure_loop(args.input_file, full=args._child == "loop_full", model=model)
        else:
            result = measure_pipeline(args.input_file, args.extra)
        print(json.dumps(result))
        return 0

    BENCH_DIR.mkdir(exist_ok=True)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if args.stream_only:
        report = json.loads((BENCH_DIR / "results.json").read_text())
        report["streaming"] = _run_tool("pipelines.dev.stream_bench", ["--quick"] if args.quick else [],
                                        BENCH_DIR / "stream.json")
        report["streaming"]["rerun_at_load_avg_1m"] = _load_avg()
        (BENCH_DIR / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        print_report(report)
        return 0
    messages = args.messages or (5_000 if args.quick else 100_000)
    quick = ["--quick"] if args.quick else []
    load_before = _load_avg()
    started = time.perf_counter()

    # 1. the scorer: HTTP vs in-process (this also trains the model the bounded runs score with)
    scoring = None
    if not args.skip_scorer:
        print("== scoring: BentoML over HTTP vs in-process ==", flush=True)
        scoring = _run_tool("pipelines.dev.scorer_bench", quick, BENCH_DIR / "scorer.json")
        model = {"model": scoring["model"], "store": scoring["store"]} if "model" in scoring else None
    elif not args.no_score:
        _run_tool("pipelines.dev.scorer_bench", ["--train_only", *quick], BENCH_DIR / "model.json")
        model = json.loads((BENCH_DIR / "model.json").read_text())
    if args.no_score:
        model = None
    os.environ["BENTOML_HOME"] = str((BENCH_DIR / "bentoml").resolve())

    # 2. bounded throughput, stages, memory
    input_file = args.input_file
    if not input_file:
        from pipelines.synthetic import generate

        input_file = str(BENCH_DIR / f"messages-{messages}.jsonl")
        if not Path(input_file).exists():
            print(f"generating {messages} messages -> {input_file} ...", flush=True)
            generate.write(input_file, messages, seed=1, bad_kinds=tuple(
                k for k in generate.BAD_KINDS if k != "oversize"))
    size_mb = Path(input_file).stat().st_size / 1e6
    score_args = ["--scorer=inprocess", f"--scorer_model={model['model']}",
                  f"--scorer_model_store={model['store']}"] if model else []
    runs = [("loop_parse_normalize", []), ("loop_full", []), ("pipeline_1", score_args)]
    if not args.skip_multiprocess:
        runs.append(("pipeline_2mp", [*score_args, "--direct_num_workers=2",
                                      "--direct_running_mode=multi_processing"]))
    results = {}
    print(f"== bounded: {input_file} ({size_mb:.1f} MB) ==", flush=True)
    for name, extra in runs:
        print(f"measuring {name} ...", flush=True)
        load = _load_avg()
        results[name] = _child(name.split("_")[0] if name.startswith("pipeline") else name, input_file, extra,
                               model if name == "loop_full" else None)
        results[name]["load_avg_1m_before"] = load
        print(f"  {results[name]['messages_per_s']:.0f} messages/s, peak RSS {results[name]['peak_rss_mb']:.0f} MB"
              f" (load average before {load:.2f})", flush=True)

    # 3. hostile e-mail bodies beside ordinary ones
    from pipelines.dev import parse_bench

    print("== parsing: every parser's hostile shapes ==", flush=True)
    parsing = parse_bench.measure(repeat=1 if args.quick else 3)

    # 4. streaming on the local stack
    streaming = None
    if not args.skip_stream:
        print("== streaming on the local stack ==", flush=True)
        streaming = _run_tool("pipelines.dev.stream_bench", quick, BENCH_DIR / "stream.json")
        print("== speed to lead on the local stack ==", flush=True)
        streaming["speed_to_lead"] = _run_tool("pipelines.dev.speed_to_lead_bench",
                                               ["--seconds", "10"] if args.quick else [],
                                               BENCH_DIR / "speed_to_lead.json")

    ref = results["loop_full"]["messages_per_s"]
    full = results["loop_full"]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m_at_start": load_before, "load_avg_1m_at_end": _load_avg()},
        "quick": args.quick, "wall_seconds": None,
        "input": {"file": input_file, "messages": results["pipeline_1"]["messages"], "size_mb": round(size_mb, 1)},
        "scored_with": model,
        "bounded": results,
        "ratios": {f"{name}_vs_loop_full": round(r["messages_per_s"] / ref, 3) for name, r in results.items()},
        "stages_us_per_lead": full["stage_us_per_lead"],
        "stages_us_per_new_lead": full["stage_us_per_new_lead"],
        "memory": {"peak_rss_mb": {name: round(r["peak_rss_mb"], 1) for name, r in results.items()},
                   "dedup_state": full["dedup_state"]},
        "scoring": scoring,
        "parsing_ms_per_email": parsing,
        "streaming": streaming,
    }
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    (BENCH_DIR / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    print(f"\nwritten: {BENCH_DIR / 'results.json'}")
    return 0


def print_report(report: dict) -> None:
    results = report["bounded"]
    ref = results["loop_full"]["messages_per_s"]
    m = report["machine"]
    print(f"\n== Leadflow bench: {report['input']['messages']:,} messages ({report['input']['size_mb']} MB), "
          f"{m['cpus']} CPUs, load average {m['load_avg_1m_at_start'] or 0:.2f} at start, "
          f"{m['load_avg_1m_at_end'] or 0:.2f} at end"
          f"{'; scored in-process with ' + report['scored_with']['model'] if report['scored_with'] else ''} ==")
    print(f"\n{'bounded run':<24}{'messages/s':>12}{'seconds':>10}{'peak RSS MB':>14}{'vs loop_full':>14}")
    for name, r in results.items():
        print(f"{name:<24}{r['messages_per_s']:>12.0f}{r['seconds']:>10.1f}{r['peak_rss_mb']:>14.0f}"
              f"{r['messages_per_s'] / ref:>14.2f}")
    full = results["loop_full"]
    print(f"\nper-stage cost, plain loop (µs per lead; {full['units_ok']:,} leads, {full['new_leads']:,} new; "
          "score/enrich/route/assign run once per new lead):")
    per_new = full.get("stage_us_per_new_lead") or {}
    for stage in ("decode_parse", "normalize", "dedup", "score", "enrich", "route", "assign", "serialize"):
        if stage in full["stage_us_per_lead"]:
            us = full["stage_us_per_lead"][stage]
            extra = f"{per_new[stage]:>10.1f} per new lead" if stage in per_new else ""
            print(f"  {stage:<14}{us:>8.1f}{extra}")
    ds = report["memory"]["dedup_state"]
    if ds:
        print(f"\nidentity state: {ds['kb_per_1000_keys']} KB per 1,000 persons (identifier, person and journal rows; "
              f"{ds['bytes_per_key_mean']} B per person over {ds['keys']:,} persons)")
    spread = full.get("assignment_spread")
    if spread:
        print(f"\nassignment spread over {full['new_leads']} new leads (leads per agent / capacity, max/min per team):")
        for label, s in spread.items():
            cells = ", ".join(f"{team} {t['max_over_min']}" for team, t in s["teams"].items())
            print(f"  {label:<20} worst {s['worst_max_over_min']}: {cells}")
    sc = report.get("scoring")
    if sc and "http" in sc:
        from scoring.handlers import format_measurements

        print(f"\nscoring, model {sc['model']} (valid AUC {sc['valid_auc']:.4f}): BentoML over HTTP | in-process")
        http = {int(k): v for k, v in sc["http"].items()}
        local = {int(k): v for k, v in sc["in_process"].items()}
        print(format_measurements(http, local))
        for size in sorted(set(http) & set(local)):
            print(f"  batch {size}: in-process {local[size]['rows_per_s'] / http[size]['rows_per_s']:.1f}x the "
                  "rows/s of HTTP")
    if report.get("parsing_ms_per_email"):
        from pipelines.dev.parse_bench import format_table

        print("\nparsing, best of runs (ms per payload, and the ratio to an ordinary payload of that parser and size):")
        print(format_table(report["parsing_ms_per_email"]))
    st = report.get("streaming")
    if st and "steps" in st:
        print(f"\nstreaming on the local stack (decided on arrival, BigQuery polled every {st['poll_seconds']} s):")
        print(f"{'rate/s':>8}{'units':>7}{'landed':>8}{'p50 s':>8}{'p99 s':>8}{'drain s':>9}  sustained")
        for r in st["steps"]:
            print(f"{r['rate']:>8g}{r['units']:>7}{r['landed']:>8}{r['latency_p50_s']:>8}{r['latency_p99_s']:>8}"
                  f"{r['drain_seconds']:>9}  {r['sustained']}")
        print(f"highest sustained rate: {st['highest_sustained_rate']} messages/s")
        speed = st.get("speed_to_lead") or {}
        for r in speed.get("steps", []):
            print(f"speed to lead at {r['rate']:g}/s: CRM delivery p50 {r['delivery_p50_s']} s, p99 "
                  f"{r['delivery_p99_s']} s; leads_current row p50 {r['visible_p50_s']} s, p99 {r['visible_p99_s']} s")
    elif st:
        print(f"\nstreaming: {st}")


if __name__ == "__main__":
    sys.exit(main())
