"""Soak test: the streaming pipeline on the local stack for N minutes at a steady rate, then zero loss and flat memory.

    python -m pipelines.dev.soak --minutes 10 --rate 10       # or: make soak

Starts a local stack (Pub/Sub and BigQuery emulators, BentoML scorer) on free ports in a temporary home, starts
the streaming pipeline (DirectRunner subprocess) against it, publishes generated messages (with their ground
truth, a few bad ones included) at ``--rate`` messages per second, and every ``--sample_seconds`` records the
pipeline's resident memory (the process and its children, psutil) and how many units BigQuery accounts for.
After publishing it waits for the backlog to drain and checks:

* zero loss: units published == lead_events + dead_letters rows, every event id and unit id once, one lead per
  person;
* flat memory: the RSS slope over the second half of the publishing period (least squares, MB/min) is below
  ``--max_slope``;
* no growing backlog: the lag (published - accounted) in the last sample is below ``--max_lag_s`` seconds' worth.

Prints a table, writes ``.bench/soak.json`` and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from pipelines.synthetic import generate


def rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) in MB per minute (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / var


def scalar(client, sql: str) -> int:
    return next(iter(client.query(sql).result()))[0] or 0


def accounted(client, dataset: str) -> int:
    return scalar(client, f"SELECT (SELECT COUNT(*) FROM `{dataset}.lead_events`) + "
                          f"(SELECT COUNT(*) FROM `{dataset}.dead_letters`)")


def soak(args: argparse.Namespace, out=print) -> dict:
    from google.cloud import pubsub_v1

    from infra.local import stack as local_stack
    from infra.local.processes import free_port, stop_process
    from schemas.bigquery import client_for

    n_total = max(1, int(args.rate * args.minutes * 60))
    msgs, manifest = generate.generated_messages(n_total, args.seed, args.bad_share)
    home = Path(tempfile.mkdtemp(prefix="leadflow-soak-"))
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(),
                                  bigquery_grpc_port=free_port(), scorer_port=free_port(), home=home)
    out(f"soak: {args.minutes:g} min at {args.rate:g} msg/s = {n_total} messages ({manifest.units} units, "
        f"{len(manifest.persons)} people); stack in {home}")
    local_stack.up(cfg, out=lambda line: None)
    os.environ.update(cfg.env())
    client = client_for(cfg.project, cfg.bigquery_host)
    dataset = f"{cfg.project}.{cfg.dataset}"
    log_path = home / "pipeline.log"
    log = log_path.open("wb")
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", *cfg.pipeline_args(), "--early_firing_seconds=5"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **cfg.env()})
    samples: list[dict] = []
    published = [0]
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while True:
            try:
                done = accounted(client, dataset)
            except Exception:  # a sample must not end the run
                done = samples[-1]["accounted"] if samples else 0
            s = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(pipeline.pid), 1),
                 "published_units": published[0], "accounted": done}
            samples.append(s)
            out(f"  {s['t_s']:7.0f} s  rss {s['rss_mb']:8.1f} MB  published {published[0]:6d}  accounted {done:6d}")
            if stop.wait(args.sample_seconds):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    result: dict = {"config": {"minutes": args.minutes, "rate": args.rate, "messages": n_total,
                               "units": manifest.units, "persons": len(manifest.persons), "seed": args.seed}}
    ok = False
    try:
        publisher = pubsub_v1.PublisherClient()
        sampler.start()
        futures = []
        unit_counts = _units_per_message(msgs)
        for i, (data, attrs) in enumerate(msgs):
            due = t0 + i / args.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            futures.append(publisher.publish(cfg.topic("input"), data, **attrs))
            published[0] += unit_counts[i]
            if pipeline.poll() is not None:
                raise RuntimeError(f"the pipeline exited with code {pipeline.returncode}; log {log_path}")
        for f in futures:
            f.result(timeout=60)
        publish_end = time.monotonic() - t0
        drain_start = time.monotonic()
        while accounted(client, dataset) < manifest.units and time.monotonic() - drain_start < args.drain_timeout:
            if pipeline.poll() is not None:
                raise RuntimeError(f"the pipeline exited with code {pipeline.returncode}; log {log_path}")
            time.sleep(2)
        drain_s = time.monotonic() - drain_start
        time.sleep(5)  # a duplicate would show up now
        stop.set()
        sampler.join(timeout=60)
        events = scalar(client, f"SELECT COUNT(*) FROM `{dataset}.lead_events`")
        dead = scalar(client, f"SELECT COUNT(*) FROM `{dataset}.dead_letters`")
        distinct_events = scalar(client, f"SELECT COUNT(DISTINCT event_id) FROM `{dataset}.lead_events`")
        distinct_units = scalar(client, "SELECT COUNT(DISTINCT message_id) FROM (SELECT message_id FROM "
                                        f"`{dataset}.lead_events` UNION ALL SELECT message_id FROM "
                                        f"`{dataset}.dead_letters`)")
        leads = scalar(client, f"SELECT COUNT(*) FROM `{dataset}.leads`")
        sink_dead = scalar(client, f"SELECT COUNT(*) FROM `{dataset}.dead_letters` WHERE stage = 'sink'")
        during = [(s["t_s"], s["rss_mb"]) for s in samples if s["t_s"] <= publish_end]
        second_half = [p for p in during if p[0] >= publish_end / 2]
        slope = slope_per_min(second_half)
        last_during = [s for s in samples if s["t_s"] <= publish_end][-1:] or samples[-1:]
        lag_units = last_during[0]["published_units"] - last_during[0]["accounted"] if last_during else 0
        checks = {
            "zero loss (units == events + dead letters)": events + dead == manifest.units,
            "no duplicate event ids": distinct_events == events,
            "every unit once": distinct_units == events + dead,
            "one lead per person": leads == len(manifest.persons),
            "no sink dead letters": sink_dead == 0,
            f"RSS slope (2nd half) < {args.max_slope:g} MB/min": slope < args.max_slope,
            f"lag at end of publishing < {args.max_lag_s:g} s of input": lag_units <= args.max_lag_s * args.rate,
        }
        ok = all(checks.values())
        rss = [s["rss_mb"] for s in samples]
        result.update({
            "published_units": manifest.units, "lead_events": events, "dead_letters": dead,
            "distinct_event_ids": distinct_events, "distinct_unit_ids": distinct_units, "leads": leads,
            "sink_dead_letters": sink_dead, "publish_s": round(publish_end, 1), "drain_s": round(drain_s, 1),
            "lag_units_at_publish_end": lag_units, "rss_mb_first": rss[0] if rss else None,
            "rss_mb_max": max(rss) if rss else None, "rss_mb_last": rss[-1] if rss else None,
            "rss_slope_mb_per_min_second_half": round(slope, 2),
            "dead_letters_expected": dict(Counter(manifest.dead_letters)),
            "checks": checks, "ok": ok, "samples": samples,
        })
    finally:
        stop.set()
        stop_process(pipeline)
        log.close()
        local_stack.down(cfg, out=lambda line: None)
    _print_table(result, out)
    return result


def _units_per_message(msgs: list[tuple[bytes, dict]]) -> list[int]:
    """Units per message as the generator counts them (a CSV upload: one per data row)."""
    out = []
    for data, attrs in msgs:
        if attrs.get("provider") == "csv_upload":
            lines = [r for r in data.decode("utf-8", "replace").splitlines()[1:] if r.strip()]
            out.append(max(1, len(lines)))
        else:
            out.append(1)
    return out


def _print_table(r: dict, out=print) -> None:
    rows = [
        ("published units", r.get("published_units")), ("lead_events", r.get("lead_events")),
        ("dead_letters", r.get("dead_letters")), ("distinct event ids", r.get("distinct_event_ids")),
        ("distinct unit ids", r.get("distinct_unit_ids")), ("leads (= people)", r.get("leads")),
        ("publishing (s)", r.get("publish_s")), ("drain after publishing (s)", r.get("drain_s")),
        ("lag at end of publishing (units)", r.get("lag_units_at_publish_end")),
        ("RSS first / max / last (MB)", f"{r.get('rss_mb_first')} / {r.get('rss_mb_max')} / {r.get('rss_mb_last')}"),
        ("RSS slope, 2nd half (MB/min)", r.get("rss_slope_mb_per_min_second_half")),
    ]
    out("")
    for k, v in rows:
        out(f"  {k:<36} {v}")
    for k, v in r.get("checks", {}).items():
        out(f"  [{'ok' if v else 'FAIL'}] {k}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.dev.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="publishing time (default 10)")
    ap.add_argument("--rate", type=float, default=10.0, help="messages per second (default 10)")
    ap.add_argument("--sample_seconds", type=float, default=10.0, help="RSS sampling period (default 10)")
    ap.add_argument("--bad_share", type=float, default=0.03, help="share of bad messages (default 0.03)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max_slope", type=float, default=5.0, help="RSS slope limit, MB/min (default 5)")
    ap.add_argument("--max_lag_s", type=float, default=60.0,
                    help="backlog limit at the end of publishing, in seconds of input (default 60)")
    ap.add_argument("--drain_timeout", type=float, default=600.0)
    ap.add_argument("--out", default=".bench/soak.json")
    args = ap.parse_args(argv)
    result = soak(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}: {'OK' if result.get('ok') else 'FAILED'}")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
