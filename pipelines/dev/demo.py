"""``make demo``: the whole product on one laptop, with one command.

1. starts the local stack (Pub/Sub emulator, BigQuery emulator, BentoML scorer with a model trained
   on generated history when there is none; topics, subscriptions, tables),
2. sends the bundled sample (every provider, returning people, redeliveries, bad inputs) through the front
   door, as each provider sends it: signed Meta webhooks (the leads read from the stack's Graph API stand-in),
   Google Ads and Twilio webhooks, Knowlarity calls, e-mails over SMTP, an XLSX and CSV uploads, API posts
   (``pipelines.dev.front_door``); what no provider would send goes to the input topic directly. ``--direct``
   instead publishes every message to the input topic with the official Pub/Sub publisher client,
3. runs the streaming pipeline on the DirectRunner until every message is accounted for (one lead
   event or one dead letter per unit, counted in BigQuery),
4. prints per-table counts, a few rows and the deliveries received, and the gateway's counts beside the
   pipeline's; meanwhile a local CRM endpoint receives one team's offers by Pub/Sub push (printed as they come)
   and a failing one's deliveries go to the CRM dead-letter topic after their retries; then it stops what it
   started.

``--bounded`` instead runs the pipeline over the sample file into ``out/demo/*.jsonl`` (no stack).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from infra.local.processes import stop_process
from pipelines.ops.summary import format_summary, summarize
from pipelines.synthetic import generate
from pipelines.synthetic.samples import agent_events_path, sample_path

# Shortened so the demo does not wait a minute for the daily-count early panes.
DEMO_ARGS = ["--early_firing_seconds=5"]


def load_manifest(input_file: Path) -> dict | None:
    path = Path(str(input_file) + ".manifest.json")
    return json.loads(path.read_text()) if path.exists() else None


# --- bounded ---------------------------------------------------------------------------------------


def run_bounded(input_file: Path, out: Path, agent_events: Path | None = None) -> int:
    from infra.local import speedups
    from pipelines import lead_pipeline

    speedups.apply()
    manifest = load_manifest(input_file)
    n_lines = sum(1 for line in input_file.open("rb") if line.strip())
    print(f"[1/3] input: {input_file} ({n_lines} messages, {input_file.stat().st_size / 1e6:.1f} MB)", flush=True)
    if out.exists():
        shutil.rmtree(out)
    print(f"[2/3] running the lead pipeline on the DirectRunner -> {out}/<table>.jsonl ...", flush=True)
    started = time.perf_counter()
    lead_pipeline.run([f"--input_file={input_file}", f"--output_dir={out}",
                       *([f"--agent_events_file={agent_events}"] if agent_events else [])])
    elapsed = time.perf_counter() - started
    print(f"      done in {elapsed:.1f} s ({n_lines / elapsed:.0f} messages/s)\n", flush=True)
    print("[3/3] summary", flush=True)
    summary = summarize(str(input_file), str(out))
    print(format_summary(summary))
    ok = summary["accounting"]["ok"]
    if manifest:
        expected = {"leads": manifest["persons"], "lead_events": manifest["lead_events"],
                    "dead_letters": manifest["dead_letters_total"]}
        got = {"leads": summary["tables"]["leads"], "lead_events": summary["lead_events"],
               "dead_letters": summary["dead_letters"]}
        match = expected == got and manifest["dead_letters"] == dict(sorted(summary["dead_letter_reasons"].items()))
        print(f"ground truth: {'matches' if match else 'DIFFERS'} {expected}")
        ok = ok and match
    print(f"\noutput files: {', '.join(sorted(p.name for p in out.glob('*.jsonl')))} in {out}/")
    return 0 if ok else 1


# --- streaming on the local stack ------------------------------------------------------------------


def sample_messages(input_file: Path) -> list[tuple[bytes, dict[str, str]]]:
    """(data, attributes) per sample line, as a provider would publish them; a line that is not a
    message object is published as it stands, without attributes."""
    out = []
    for line in input_file.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            out.append(generate.publishable(line))
        except (ValueError, AttributeError):
            out.append((line, {}))
    return out


def publish(messages: list[tuple[bytes, dict[str, str]]], topic: str) -> list[str]:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    futures = [publisher.publish(topic, data, **attrs) for data, attrs in messages]
    return [f.result(timeout=60) for f in futures]


def count_rows(client, dataset: str) -> dict[str, int]:
    from schemas.records import TABLES

    counts = {}
    for table in TABLES:
        rows = client.query(f"SELECT COUNT(*) AS n FROM `{dataset}.{table}`").result()
        counts[table] = next(iter(rows))["n"]
    return counts


LATEST_PANES = ("SELECT * FROM `{dataset}.source_daily_counts` QUALIFY ROW_NUMBER() OVER "
                "(PARTITION BY source_id, event_date ORDER BY pane_index DESC) = 1")


def counted_in_latest_panes(client, dataset: str) -> int:
    """Events counted by the newest daily-count pane of every (source, day)."""
    rows = client.query(f"SELECT SUM(events) AS n FROM ({LATEST_PANES.format(dataset=dataset)})").result()
    return next(iter(rows))["n"] or 0


def wait_accounted(client, dataset: str, expected_units: int, pipeline: subprocess.Popen, timeout: float) -> dict:
    started = time.monotonic()
    last = None
    while True:
        counts = count_rows(client, dataset)
        done = counts["lead_events"] + counts["dead_letters"]
        if done != last:
            print(f"      {time.monotonic() - started:5.0f} s  accounted {done}/{expected_units} units "
                  f"(lead_events {counts['lead_events']}, dead_letters {counts['dead_letters']}, "
                  f"leads {counts['leads']})", flush=True)
            last = done
        if done >= expected_units:
            return counts
        if pipeline.poll() is not None:
            raise RuntimeError(f"the pipeline exited with code {pipeline.returncode}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"only {done}/{expected_units} units accounted after {timeout:.0f} s")
        time.sleep(2)


def pull_all(subscription: str, max_wait: float = 5.0) -> list:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    received, quiet_since = [], time.monotonic()
    while time.monotonic() - quiet_since < max_wait:
        resp = subscriber.pull(request={"subscription": subscription, "max_messages": 500}, timeout=10)
        if resp.received_messages:
            received.extend(resp.received_messages)
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": [m.ack_id for m in resp.received_messages]})
            quiet_since = time.monotonic()
    subscriber.close()
    return received


def send_through_front_door(cfg, messages: list[tuple[bytes, dict[str, str]]]) -> tuple[int, list]:
    """Every message through the door its provider uses: (units the pipeline will account for, the sends)."""
    from pipelines.dev.front_door import FrontDoor

    door = FrontDoor.for_stack(cfg)
    try:
        sent = [door.send(data, attrs) for data, attrs in messages]
    finally:
        door.close()
    return sum(s.units for s in sent), sent


def print_doors(sent: list, gateway_counts: dict[str, int], pipeline_rows: dict[str, int]) -> None:
    """Per door: requests, the answers, messages published, units; beside the pipeline's rows of its providers."""
    from collections import Counter

    from pipelines.dev.front_door import PROVIDERS_OF, TOPIC

    by_door: dict[str, list] = {}
    for s in sent:
        by_door.setdefault(s.door, []).append(s)
    print(f"      {'door':<14}{'requests':>9}  {'answers':<30}{'published':>10}{'units':>7}{'pipeline rows':>15}")
    for door, sends in sorted(by_door.items()):
        answers = ", ".join(f"{a}x{n}" for a, n in sorted(Counter(s.answer for s in sends).items()))
        if door == TOPIC:  # whatever provider these name, it is none of the doors'
            named = {p for providers in PROVIDERS_OF.values() for p in providers}
            rows = sum(n for p, n in pipeline_rows.items() if p not in named)
        else:
            rows = sum(pipeline_rows.get(p, 0) for p in PROVIDERS_OF[door])
        print(f"      {door:<14}{len(sends):>9}  {answers:<30}{sum(s.published for s in sends):>10}"
              f"{sum(s.units for s in sends):>7}{rows:>15}")
    counted = {k: v for k, v in sorted(gateway_counts.items()) if not k.endswith(".accepted")}
    print("      the gateway's own counters (/metrics): " + ", ".join(f"{k} {v}" for k, v in counted.items()))


def rows_per_provider(client, dataset: str) -> dict[str, int]:
    """lead_events + dead_letters per provider (a dead letter without one counts under '')."""
    rows: dict[str, int] = {}
    for table in ("lead_events", "dead_letters"):
        for row in client.query(f"SELECT IFNULL(provider, '') AS p, COUNT(*) AS n FROM `{dataset}.{table}` "
                                "GROUP BY 1").result():
            rows[row["p"]] = rows.get(row["p"], 0) + row["n"]
    return rows


def run_streaming(input_file: Path, timeout: float, direct: bool = False, pubsub: str = "builtin") -> int:
    from infra.local import stack as local_stack
    from infra.local.crm_endpoint import demo_crm_push
    from schemas.bigquery import client_for

    cfg = local_stack.StackConfig(gateway=not direct, pubsub=pubsub)
    manifest = load_manifest(input_file)
    messages = sample_messages(input_file)
    expected_units = manifest["units"] if manifest else len(messages)
    already_up = local_stack.status(cfg, out=lambda *_: None)
    print("[1/5] local stack: " + ("already running, reusing it" if already_up else "starting ..."), flush=True)
    if not already_up:
        local_stack.up(cfg, out=lambda line: print("      " + line, flush=True))
    os.environ.update(cfg.env())
    log_path = cfg.home / "demo-pipeline.log"
    pipeline = None
    sent: list = []
    try:
        with demo_crm_push(cfg, out=lambda line: print(line, flush=True)):
            print(f"[2/5] starting the streaming pipeline (DirectRunner), log {log_path}", flush=True)
            args = [*cfg.pipeline_args(), *DEMO_ARGS]
            with log_path.open("wb") as log:
                pipeline = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", *args], stdout=log,
                                            stderr=subprocess.STDOUT, env={**os.environ, **cfg.env()})
            if direct:
                print(f"[3/5] publishing {len(messages)} sample messages to {cfg.topic('input')} "
                      "with the official publisher client ...", flush=True)
                ids = publish(messages, cfg.topic("input"))
                print(f"      published {len(ids)} messages; waiting for {expected_units} units "
                      "(a CSV upload is one unit per row) ...", flush=True)
            else:
                print(f"[3/5] sending {len(messages)} sample messages through the gateway at {cfg.gateway_url} "
                      "as each provider sends them ...", flush=True)
                started = time.monotonic()
                expected_units, sent = send_through_front_door(cfg, messages)
                print(f"      sent in {time.monotonic() - started:.1f} s; {sum(s.published for s in sent)} messages "
                      f"published; waiting for {expected_units} units (an upload is one unit per row) ...", flush=True)
            client = client_for(cfg.project, cfg.bigquery_host)
            dataset = f"{cfg.project}.{cfg.dataset}"
            started = time.monotonic()
            counts = wait_accounted(client, dataset, expected_units, pipeline, timeout)
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + 45  # the daily counts catch up with the next early panes
            while counted_in_latest_panes(client, dataset) < counts["lead_events"] and time.monotonic() < deadline:
                time.sleep(2)
            counts = count_rows(client, dataset)
            print(f"[4/5] every unit accounted for in {elapsed:.0f} s; rows per BigQuery table:", flush=True)
            for table, n in counts.items():
                print(f"      {dataset}.{table:<22}{n:>6}")
            print("\n      outcomes:", flush=True)
            for row in client.query(f"SELECT outcome, COUNT(*) AS n FROM `{dataset}.lead_events` "
                                    "GROUP BY outcome ORDER BY n DESC").result():
                print(f"        {row['outcome']:<24}{row['n']:>6}")
            print("      dead letters by reason:")
            for row in client.query(f"SELECT stage, error_type, COUNT(*) AS n FROM `{dataset}.dead_letters` "
                                    "GROUP BY stage, error_type ORDER BY n DESC").result():
                print(f"        {row['stage'] + '/' + row['error_type']:<40}{row['n']:>6}")
            print("      scores (new leads): source, priority tier:")
            for row in client.query(f"SELECT score_source, priority_tier, COUNT(*) AS n, ROUND(AVG(score), 3) AS avg "
                                    f"FROM `{dataset}.leads` GROUP BY 1, 2 ORDER BY 1, 2").result():
                print(f"        {row['score_source'] or 'unscored':<10} {row['priority_tier'] or '-':<6}{row['n']:>6}"
                      f"   mean score {row['avg']}")
            print("      today's counts per source (latest pane):")
            for row in client.query(
                    f"SELECT source_id, events, new_leads, cross_source, duplicates, replays FROM "
                    f"({LATEST_PANES.format(dataset=dataset)}) ORDER BY events DESC LIMIT 6").result():
                print(f"        {row['source_id']:<22} events {row['events']:>4}  new {row['new_leads']:>4}  "
                      f"cross {row['cross_source']:>3}  dup {row['duplicates']:>3}  replay {row['replays']:>3}")
            print("      a few leads (ids and sources only):")
            for row in client.query(f"SELECT lead_id, primary_source, first_seen_at FROM `{dataset}.leads` "
                                    "ORDER BY first_seen_at LIMIT 5").result():
                print(f"        {row['lead_id']}  {row['primary_source']:<22} {row['first_seen_at']}")
            print("      routing: status, team, leads (no agent answers in the demo: each agent holds up to its "
                  "max_open offers and the rest wait in their desk's queue; `leadflow simulate-desk` plays a day "
                  "with agents):")
            for row in client.query(f"SELECT routing_status, team, COUNT(*) AS n FROM `{dataset}.leads` "
                                    "GROUP BY 1, 2 ORDER BY n DESC LIMIT 8").result():
                print(f"        {row['routing_status'] or '-':<14} {row['team'] or '-':<20}{row['n']:>6}")
            deliveries = pull_all(cfg.subscription("lead-deliveries-crm"))
            review = pull_all(cfg.subscription("lead-manual-review-ops"), max_wait=2)
            dead_topic = pull_all(cfg.subscription("lead-dead-letters-ops"), max_wait=2)
            print(f"      deliveries received by the CRM subscription: {len(deliveries)} "
                  f"({len({m.message.attributes['lead_id'] for m in deliveries})} leads; attributes territory, team, "
                  f"agent, priority); manual review: {len(review)}; dead letters on the dead-letter topic: "
                  f"{len(dead_topic)}")
            if sent:
                from pipelines.dev.front_door import FrontDoor

                print("      the front door (gateway) beside the pipeline:")
                door = FrontDoor.for_stack(cfg)
                try:
                    print_doors(sent, door.gateway_counts(), rows_per_provider(client, dataset))
                finally:
                    door.close()
            ok = counts["lead_events"] + counts["dead_letters"] == expected_units
            if manifest:
                ok = ok and counts["leads"] == manifest["persons"]
                print(f"      ground truth: leads {counts['leads']}/{manifest['persons']}, "
                      f"units {counts['lead_events'] + counts['dead_letters']}/{expected_units}")
            return 0 if ok else 1
    finally:
        if pipeline is not None:
            stop_process(pipeline)
        if not already_up:
            print("[5/5] stopping the local stack", flush=True)
            local_stack.down(cfg, out=lambda line: print("      " + line, flush=True))
        else:
            print("[5/5] leaving the stack running (it was up before the demo)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input_file", default=str(sample_path()))
    ap.add_argument("--bounded", action="store_true", help="run over the file into --output_dir, no stack")
    ap.add_argument("--agent_events_file", default=None,
                    help="bounded: agent events (default: the sample's simulated agents with the sample input)")
    ap.add_argument("--output_dir", default="out/demo")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for every unit (streaming)")
    ap.add_argument("--pubsub", default="builtin", choices=("builtin", "gcloud", "auto"),
                    help="the Pub/Sub emulator of the demo's stack (gcloud's applies no push filters or push "
                         "dead-letter policies, so the CRM part differs there: docs/performance.md)")
    ap.add_argument("--direct", action="store_true",
                    help="publish the sample to the input topic instead of sending it through the gateway")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.bounded:
        events = args.agent_events_file or (str(agent_events_path()) if args.input_file == str(sample_path())
                                            else None)
        return run_bounded(Path(args.input_file), Path(args.output_dir), Path(events) if events else None)
    return run_streaming(Path(args.input_file), args.timeout, direct=args.direct, pubsub=args.pubsub)


if __name__ == "__main__":
    sys.exit(main())
