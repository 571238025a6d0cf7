"""The ``leadflow`` command.

    leadflow run --input_file=messages.jsonl --output_dir=out/   the lead pipeline, locally sped up (any option)
    leadflow generate --messages 100000 --out messages.jsonl     realistic messages + ground truth
    leadflow summary --input_file=... --output_dir=...           what a bounded run produced
    leadflow demo                                                the bundled sample, end to end
    leadflow local up | down | status | env                      the local Pub/Sub + BigQuery stack
    leadflow train --parquet history.parquet                     train the LightGBM scorer (or --from_bigquery T)
    leadflow replay-dead-letters [--dry-run] [--error_type T]    republish dead letters to their input topic
    leadflow identity-seed --bq_dataset P:D --identity_store S   a new job's store knows the tables' persons
    leadflow forget --phone P | --email E | --lead_id L [--dry_run] --bq_dataset P:D --identity_store S
                                                                 erase a person on request (tables, store)
    leadflow gateway --host H --port P                           the ingestion gateway (default port 8080, SMTP 2525)
    leadflow meta-backfill --form_id F --since 24h               publish a Meta form's recent leads (missed webhooks)
    leadflow knowlarity-sync --since 15m                         publish Knowlarity's recent calls from its call log
    leadflow meta-refetch [--dry-run]                            read again the Meta leads the gateway could not read
    leadflow simulate-desk [--leads 900] [--seed 7]              a simulated day: today's routing rules vs the desk's
    leadflow dashboard --bq_dataset P:D [--port 8050]            the lead-operations dashboard over the views
    leadflow report --bq_dataset P:D --out report.html           the same page as one self-contained file
    leadflow trace --bq_dataset P:D --lead_id L | --message_id M | --phone P | --email E   one person's journey
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = ("run", "generate", "summary", "demo", "local", "train", "replay-dead-letters", "identity-seed",
                "forget", "gateway", "meta-backfill", "knowlarity-sync", "meta-refetch", "simulate-desk", "dashboard",
                "report", "trace")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        from infra.local import speedups
        from pipelines import lead_pipeline

        if not speedups.is_dataflow(rest):
            speedups.apply()  # the DirectRunner speed-ups, for local runs only
        return lead_pipeline.main(rest)
    if command == "generate":
        from pipelines.synthetic import generate

        return generate.main(rest)
    if command == "train":
        from scoring import train

        return train.main(rest)
    if command == "local":
        from infra.local import stack as local_stack

        return local_stack.main(rest)
    if command == "replay-dead-letters":
        from pipelines.ops import replay

        return replay.main(rest)
    if command == "identity-seed":
        from pipelines.ops import identity_seed

        return identity_seed.main(rest)
    if command == "forget":
        from pipelines.ops import forget

        return forget.main(rest)
    if command == "gateway":
        from gateway import server

        return server.main(rest)
    if command == "meta-backfill":
        from gateway import backfill

        return backfill.main(rest)
    if command == "knowlarity-sync":
        from gateway import knowlarity_sync

        return knowlarity_sync.main(rest)
    if command == "meta-refetch":
        from gateway import refetch

        return refetch.main(rest)
    if command == "simulate-desk":
        from pipelines.dev import desk_sim

        return desk_sim.main(rest)
    if command == "dashboard":
        from dashboard import server as dashboard_server

        return dashboard_server.main(rest)
    if command == "report":
        from dashboard import server as dashboard_server

        return dashboard_server.report_main(rest)
    if command == "trace":
        from pipelines.ops import trace

        return trace.main(rest)
    if command == "demo":
        from pipelines.dev import demo

        return demo.main(rest)
    from pipelines.ops.summary import format_summary, summarize

    ap = argparse.ArgumentParser(prog="leadflow summary")
    ap.add_argument("--input_file", required=True)
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(rest)
    s = summarize(args.input_file, args.output_dir)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0 if s["accounting"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
