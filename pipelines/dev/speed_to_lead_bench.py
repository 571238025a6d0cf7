"""Speed to lead on the local stack: publish -> delivery (the CRM subscription) and publish -> visible
``leads_current`` row, p50 and p99 per rate, for this tree's pipeline and, side by side, another checkout's.

A private local stack (its own ports, ``.bench/speed``) and the streaming pipeline on the DirectRunner; generated
messages (no bad inputs, no redeliveries) at steady rates. A streaming pull on ``lead-deliveries-crm`` records when
each lead's first delivery arrives; ``leads_current`` is polled every ``--poll`` seconds for new lead ids (queried only
once ``leads`` or ``lead_versions`` grew since the last poll, so the probe does not load the emulator). A lead's
latency is measured from the Pub/Sub publish time of the event that created it (``lead_events``, outcome new).

    python -m pipelines.dev.speed_to_lead_bench --rates 10,50 --seconds 20
    python -m pipelines.dev.speed_to_lead_bench --pipeline_dir /tmp/before --pipeline_arg=--dedup_hold_seconds=5

``--pipeline_dir`` runs the pipeline of another checkout (e.g. ``git worktree add /tmp/before <rev>``) on this
tree's stack; its unknown options are left out (``--identity_store`` before the identity store existed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from infra.local.processes import free_port, stop_process
from pipelines.dev.demo import sample_messages
from pipelines.dev.stream_bench import BENCH_DIR, percentile
from pipelines.synthetic import generate


def _pipeline_args(cfg, pipeline_dir: Path, extra: list[str]) -> list[str]:
    listing = ("import argparse; from pipelines.options import LeadflowOptions as O; p = argparse.ArgumentParser(); "
               "O._add_argparse_args(p); print(' '.join(s for a in p._actions for s in a.option_strings))")
    known = set(subprocess.run([sys.executable, "-c", listing], cwd=pipeline_dir, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(pipeline_dir)}, check=True).stdout.split())
    known |= {"--streaming", "--runner"}
    return [a for a in cfg.pipeline_args() if a.split("=")[0] in known] + extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="10,50")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--poll", type=float, default=0.25)
    ap.add_argument("--every_poll_queries_the_view", dest="cheap_poll", action="store_false",
                    help="query leads_current at every poll, not only after lead_versions grew")
    ap.add_argument("--drain", type=float, default=90)
    ap.add_argument("--pipeline_dir", default=".", help="checkout whose pipeline runs (default: this tree)")
    ap.add_argument("--pipeline_arg", action="append", default=[], help="extra pipeline option (repeatable)")
    ap.add_argument("--label", default=None)
    args = ap.parse_args(argv)

    from google.cloud import pubsub_v1

    from infra.local import stack as local_stack
    from schemas.bigquery import client_for

    rates = [float(r) for r in args.rates.split(",")]
    total = int(sum(r * args.seconds for r in rates)) + 20
    BENCH_DIR.mkdir(exist_ok=True)
    path = BENCH_DIR / f"speed-{total}.jsonl"
    generate.write(path, total, seed=11, bad_share=0.0, replay_share=0.0)
    messages = [m for m in sample_messages(path) if m[1].get("provider") != "csv_upload"]

    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(), bigquery_grpc_port=free_port(),
                                  home=BENCH_DIR / "speed")
    local_stack.up(cfg, out=lambda line: print("  " + line, flush=True))
    os.environ.update(cfg.env())
    pipeline_dir = Path(args.pipeline_dir).resolve()
    log = (cfg.home / "pipeline.log").open("wb")
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", *_pipeline_args(cfg, pipeline_dir, args.pipeline_arg)],
        cwd=pipeline_dir, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **cfg.env(), "PYTHONPATH": str(pipeline_dir)})
    client = client_for(cfg.project, cfg.bigquery_host)
    dataset = f"{cfg.project}.{cfg.dataset}"
    delivered: dict[str, datetime] = {}
    visible: dict[str, datetime] = {}
    lock, stop = threading.Lock(), threading.Event()

    def on_delivery(msg):
        now = datetime.now(UTC)
        with lock:
            delivered.setdefault(msg.attributes.get("lead_id", ""), now)
        msg.ack()

    view_queries = [0]

    def poll_current():
        # The emulator answers on one event loop, and a leads_current query (a large view) holds it for about
        # 0.1 s: asked 4 times a second, the probe would delay the pipeline's inserts. The view changes only when
        # its tables do, so it is queried only after leads (first sightings) or lead_versions (every change) grew.
        changes = (f"SELECT (SELECT COUNT(*) FROM `{dataset}.leads`) + "
                   f"(SELECT COUNT(*) FROM `{dataset}.lead_versions`) AS n")
        versions = -1
        while not stop.is_set():
            try:
                n = next(iter(client.query(changes).result()))["n"]
                if n != versions or not args.cheap_poll:
                    now = datetime.now(UTC)  # as the view query starts (the query reads what was there then)
                    rows = list(client.query(f"SELECT lead_id FROM `{dataset}.leads_current`").result())
                    view_queries[0] += 1
                    for row in rows:
                        visible.setdefault(row["lead_id"], now)
                    versions = n
            except Exception as e:  # the view over tables still filling; the next poll tries again
                print(f"  poll: {type(e).__name__}", flush=True)
            stop.wait(args.poll)

    subscriber = pubsub_v1.SubscriberClient()
    pull = subscriber.subscribe(cfg.subscription("lead-deliveries-crm"), on_delivery)
    poller = threading.Thread(target=poll_current, daemon=True)
    poller.start()
    publisher = pubsub_v1.PublisherClient()
    steps = []
    try:
        warm, messages = messages[:10], messages[10:]
        for data, attrs in warm:
            publisher.publish(cfg.topic("input"), data, **attrs).result(timeout=60)
        deadline = time.monotonic() + 180
        while len(visible) < 5 and time.monotonic() < deadline:
            time.sleep(1)
        for rate in rates:
            n = int(rate * args.seconds)
            batch, messages = messages[:n], messages[n:]
            started = time.monotonic()
            ids = []
            for i, (data, attrs) in enumerate(batch):
                while time.monotonic() < started + i / rate:
                    time.sleep(0.001)
                ids.append(publisher.publish(cfg.topic("input"), data, **attrs))
            ids = {f.result(timeout=60) for f in ids}
            print(f"rate {rate:g}/s: published {len(ids)}", flush=True)
            steps.append((rate, ids))
            time.sleep(5)
        deadline = time.monotonic() + args.drain
        published = set().union(*(ids for _, ids in steps))
        created, stable = {}, 0
        while time.monotonic() < deadline and stable < 3:
            now = {r["message_id"]: (r["lead_id"], r["publish_time"]) for r in client.query(
                f"SELECT message_id, lead_id, publish_time FROM `{dataset}.lead_events` WHERE outcome = 'new'"
            ).result() if r["message_id"] in published}
            done = all(lead in delivered and lead in visible for lead, _ in now.values())
            stable = stable + 1 if now and len(now) == len(created) and done else 0
            created = now
            time.sleep(2)
    finally:
        stop.set()
        pull.cancel()
        stop_process(pipeline)
        log.close()
        local_stack.down(cfg, out=lambda line: None)
    results = []
    for rate, ids in steps:
        leads = [(lead, t) for m, (lead, t) in created.items() if m in ids]
        to_delivery = [(delivered[lead] - t).total_seconds() for lead, t in leads if lead in delivered]
        to_visible = [(visible[lead] - t).total_seconds() for lead, t in leads if lead in visible]
        results.append({"rate": rate, "messages": len(ids), "new_leads": len(leads),
                        "delivered": len(to_delivery), "visible": len(to_visible),
                        "delivery_p50_s": round(percentile(to_delivery, 50), 2),
                        "delivery_p99_s": round(percentile(to_delivery, 99), 2),
                        "visible_p50_s": round(percentile(to_visible, 50), 2),
                        "visible_p99_s": round(percentile(to_visible, 99), 2)})
    label = args.label or ("this tree" if pipeline_dir == Path(".").resolve() else str(pipeline_dir))
    report = {"label": label, "pipeline_args": args.pipeline_arg, "poll_seconds": args.poll,
              "view_queried_only_after_changes": args.cheap_poll, "view_queries": view_queries[0], "steps": results}
    out = BENCH_DIR / "speed_to_lead.jsonl"  # every run, for side-by-side tables
    with out.open("a") as f:
        f.write(json.dumps(report) + "\n")
    (BENCH_DIR / "speed_to_lead.json").write_text(json.dumps(report, indent=2) + "\n")  # the latest (make bench)
    print(f"\n{label} {' '.join(args.pipeline_arg)}")
    print(f"{'rate/s':>7}{'leads':>7}{'deliv p50':>11}{'deliv p99':>11}{'row p50':>9}{'row p99':>9}")
    for r in results:
        print(f"{r['rate']:>7g}{r['new_leads']:>7}{r['delivery_p50_s']:>11}{r['delivery_p99_s']:>11}"
              f"{r['visible_p50_s']:>9}{r['visible_p99_s']:>9}")
    print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
