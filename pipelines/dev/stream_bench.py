"""Streaming on the local stack: publish -> visible BigQuery row latency, and the highest steady rate.

Starts a private local stack (its own ports and ``.bench/stack`` home) and the streaming pipeline
on the DirectRunner, then publishes generated lead messages at steady rates, one step per rate.
While publishing, it polls the BigQuery emulator every ``--poll`` seconds for newly visible
``lead_events`` / ``dead_letters`` rows; a unit's latency is the wall time its row was first seen
minus its Pub/Sub publish time (so the poll interval bounds the resolution).

A rate is *sustained* when the rows of the step all land within ``--drain`` seconds after the step
ends, the backlog (published minus landed) did not grow from the middle to the last third of the step (mean
backlog up by more than 25% of a third's messages: it fills for about one latency, then stays flat while the
pipeline keeps up), and the median
latency did not grow (stays within max(2 s, 50%) of the first step's). Rates are stepped up until one is
not sustained; the last sustained one is the result.

    python -m pipelines.dev.stream_bench --rates 2,5,10,20,30,50,75,100,150 --seconds 30

Identity is decided on arrival (no hold), so the latency is the local stack's own. Results go to
``.bench/stream.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from infra.local.processes import free_port, stop_process
from pipelines.dev.demo import sample_messages
from pipelines.synthetic import generate

BENCH_DIR = Path(".bench")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Landing:
    """Polls BigQuery for units whose rows became visible since the last poll."""

    def __init__(self, client, dataset: str):
        self.client, self.dataset = client, dataset
        self.seen: dict[str, float] = {}  # unit id -> latency seconds

    def poll(self) -> int:
        now = datetime.now(UTC)
        new = 0
        for table in ("lead_events", "dead_letters"):
            rows = self.client.query(f"SELECT message_id, publish_time FROM `{self.dataset}.{table}`").result()
            for row in rows:
                if row["message_id"] not in self.seen and row["publish_time"] is not None:
                    self.seen[row["message_id"]] = (now - row["publish_time"]).total_seconds()
                    new += 1
        return new


def run_step(publisher, topic, messages, rate, seconds, landing, poll, drain) -> dict:
    n = int(rate * seconds)
    batch = messages[:n]
    del messages[:n]
    before = set(landing.seen)
    started = time.monotonic()
    futures, backlog = [], []
    next_poll = started
    for i, (data, attrs) in enumerate(batch):
        due = started + i / rate
        while time.monotonic() < due:
            if time.monotonic() >= next_poll:
                landing.poll()
                backlog.append((time.monotonic() - started, len(futures) - (len(landing.seen) - len(before))))
                next_poll += poll
            time.sleep(min(0.002, max(0.0, due - time.monotonic())))
        futures.append(publisher.publish(topic, data, **attrs))
    ids = {f.result(timeout=60) for f in futures}
    publish_s = time.monotonic() - started
    drain_started = time.monotonic()
    units = sum(_units(data, attrs) for data, attrs in batch)
    while len(landing.seen) - len(before) < units and time.monotonic() - drain_started < drain:
        time.sleep(poll)
        landing.poll()
    drain_s = time.monotonic() - drain_started
    landed = len(landing.seen) - len(before)
    latencies = [landing.seen[u] for u in set(landing.seen) - before]
    # the backlog fills for about one latency, then stays flat while the pipeline
    # keeps up, with a saw-tooth from the runner's bundles: "growing" = the mean backlog over the last third of
    # the step exceeds the middle third's by more than 25% of what was published in a third (and 8 units)
    third = publish_s / 3
    mid = [b for t, b in backlog if third <= t < 2 * third]
    last = [b for t, b in backlog if t >= 2 * third]
    half = last
    slope = (sum(last) / len(last) - sum(mid) / len(mid)) / third if mid and last and third > 0 else 0.0
    growing = slope * third > max(8.0, 0.25 * rate * third)
    return {
        "rate": rate, "messages": len(ids), "units": units, "landed": landed, "publish_seconds": round(publish_s, 1),
        "drain_seconds": round(drain_s, 1), "latency_p50_s": round(percentile(latencies, 50), 2),
        "latency_p99_s": round(percentile(latencies, 99), 2),
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "backlog_end_of_step": half[-1] if half else None, "backlog_growth_per_s": round(slope, 2),
        "backlog_growing": growing,
        "sustained": landed >= units and not growing and drain_s < drain,
        "throughput_units_per_s": round(landed / (publish_s + drain_s), 1),
    }


def _units(data: bytes, attrs: dict) -> int:
    if attrs.get("provider") != "csv_upload":
        return 1
    rows = [r for r in data.decode("utf-8", "replace").splitlines()[1:] if r.strip()]
    return max(1, len(rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=None, help="comma-separated messages/s, one step each, stepped up until "
                    "one is not sustained (default 2,5,10,20,30,50,75,100,150; --quick: 10,50)")
    ap.add_argument("--seconds", type=float, default=None, help="length of each step (default 30; --quick: 15)")
    ap.add_argument("--quick", action="store_true", help="two short steps (a smoke run)")
    ap.add_argument("--poll", type=float, default=0.5, help="BigQuery poll interval (latency resolution)")
    ap.add_argument("--drain", type=float, default=60, help="seconds a step may take to land after publishing")
    args = ap.parse_args(argv)

    from google.cloud import pubsub_v1

    from infra.local import stack as local_stack
    from schemas.bigquery import client_for

    args.rates = args.rates or ("10,50" if args.quick else "2,5,10,20,30,50,75,100,150")
    args.seconds = args.seconds or (15 if args.quick else 30)
    rates = [float(r) for r in args.rates.split(",")]
    total = int(sum(r * args.seconds for r in rates)) + 10
    BENCH_DIR.mkdir(exist_ok=True)
    path = BENCH_DIR / f"stream-{total}.jsonl"
    kinds = tuple(k for k in generate.BAD_KINDS if k not in ("oversize", "not_a_message_line"))
    generate.write(path, total, seed=5, bad_kinds=kinds)
    # Every line published once (no exact redeliveries, which would share a unit id here).
    messages = list(dict.fromkeys((d, tuple(sorted(a.items()))) for d, a in sample_messages(path)))
    messages = [(d, dict(a)) for d, a in messages]

    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(),
                                  bigquery_grpc_port=free_port(), home=BENCH_DIR / "stack")
    local_stack.up(cfg, out=lambda line: print("  " + line, flush=True))
    os.environ.update(cfg.env())
    log = (cfg.home / "pipeline.log").open("wb")
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", *cfg.pipeline_args()], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **cfg.env()})
    results = []
    try:
        publisher = pubsub_v1.PublisherClient()
        landing = Landing(client_for(cfg.project, cfg.bigquery_host), f"{cfg.project}.{cfg.dataset}")
        # Warm-up: the first bundle pays for start-up; it is not measured.
        warm = messages[:10]
        del messages[:10]
        for data, attrs in warm:
            publisher.publish(cfg.topic("input"), data, **attrs).result(timeout=60)
        deadline = time.monotonic() + 120
        while len(landing.seen) < 10 and time.monotonic() < deadline:
            time.sleep(1)
            landing.poll()
        for rate in rates:
            print(f"rate {rate:g} messages/s for {args.seconds:g} s ...", flush=True)
            r = run_step(publisher, cfg.topic("input"), messages, rate, args.seconds, landing, args.poll, args.drain)
            # latency growing: the median clearly above the first (slowest-rate) step's, i.e. queueing
            base = results[0]["latency_p50_s"] if results else r["latency_p50_s"]
            r["latency_growing"] = r["latency_p50_s"] > base + max(2.0, 0.5 * base)
            r["sustained"] = r["sustained"] and not r["latency_growing"]
            results.append(r)
            print(f"  landed {r['landed']}/{r['units']} units; latency p50 {r['latency_p50_s']} s, "
                  f"p99 {r['latency_p99_s']} s; drain {r['drain_seconds']} s; "
                  f"{'sustained' if r['sustained'] else 'NOT sustained'}", flush=True)
            if not r["sustained"]:
                break
    finally:
        stop_process(pipeline)
        log.close()
        local_stack.down(cfg, out=lambda line: None)
    sustained = [r["rate"] for r in results if r["sustained"]]
    report = {"poll_seconds": args.poll, "steps": results,
              "highest_sustained_rate": max(sustained) if sustained else None}
    (BENCH_DIR / "stream.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'rate/s':>8}{'units':>7}{'landed':>8}{'p50 s':>8}{'p99 s':>8}{'drain s':>9}  sustained")
    for r in results:
        print(f"{r['rate']:>8g}{r['units']:>7}{r['landed']:>8}{r['latency_p50_s']:>8}{r['latency_p99_s']:>8}"
              f"{r['drain_seconds']:>9}  {r['sustained']}")
    print(f"highest sustained rate: {report['highest_sustained_rate']} messages/s "
          f"(decided on arrival); written {BENCH_DIR / 'stream.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
