"""``leadflow identity-seed``: fill an identity store with every person the tables know, before a new job starts.

A job of the version before the identity store kept its persons only in Beam state; the job that replaces it
(drained, then launched with ``--identity_store``) would meet every returning person as a stranger. This reads
``lead_events`` and ``lead_merges`` (BigQuery, or a bounded run's JSONL files) and writes the store rows that
know each person under the lead id the tables already use (``transforms.identity.seed_rows``):

    leadflow identity-seed --bq_dataset PROJECT:DATASET --identity_store bigtable:projects/P/instances/I/tables/T
    leadflow identity-seed --from_dir out/ --identity_store sqlite:.leadflow/identity.sqlite --dry_run

Rows already in the store are kept (a job that ran on it knows more than the tables), so a second run writes
nothing. Run it with the same ``LEADFLOW_IDENTITY_HASH_KEY`` as the job. Output: counts and timings only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from schemas.bigquery import client_for, parse_dataset
from transforms.identity import IdentityConfig, seed_rows
from transforms.identity_store import SPEC_HELP, check_spec, open_store

EVENT_COLUMNS = ("event_id", "message_id", "lead_id", "outcome", "provider", "source_id", "external_id",
                 "event_time", "publish_time", "phone_e164", "email")
MERGE_COLUMNS = ("merged_lead_id", "into_lead_id", "merged_at", "processed_at")
WRITE_BATCH = 500
PROGRESS_EVERY = 100_000


def _timestamp(value):
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _jsonl(path: Path, columns: tuple[str, ...]) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                yield {c: row.get(c) for c in columns}


def _bigquery(dataset: str, table: str, columns: tuple[str, ...]) -> Iterator[dict]:
    from google.api_core.exceptions import NotFound

    project, name = parse_dataset(dataset)
    client = client_for(project)
    sql = f"SELECT {', '.join(columns)} FROM `{project}.{name}.{table}`"
    try:
        rows = client.query(sql).result(page_size=50_000)
    except NotFound:
        if table == "lead_merges":  # a dataset of the version before merges
            return
        raise
    for row in rows:
        yield dict(row.items())


def read_tables(args) -> tuple[Iterator[dict], list[dict], list[int]]:
    """The events (read as they are consumed, with progress), the merges, and [events read so far]."""
    def source(table: str, columns: tuple[str, ...]) -> Iterator[dict]:
        if args.from_dir:
            return _jsonl(Path(args.from_dir) / f"{table}.jsonl", columns)
        return _bigquery(args.bq_dataset, table, columns)

    def events() -> Iterator[dict]:
        for i, e in enumerate(source("lead_events", EVENT_COLUMNS), 1):
            e["event_time"], e["publish_time"] = _timestamp(e["event_time"]), _timestamp(e["publish_time"])
            read[0] = i
            yield e
            if i % PROGRESS_EVERY == 0:
                print(f"  read {i:,} events", flush=True)

    read = [0]
    merges = [{**m, "merged_at": _timestamp(m["merged_at"])} for m in source("lead_merges", MERGE_COLUMNS)]
    return events(), merges, read


def write_missing(store, rows: dict[str, dict], out: Callable[[str], None]) -> int:
    """Writes the rows the store does not hold yet; returns how many were written."""
    keys, written = list(rows), 0
    for start in range(0, len(keys), WRITE_BATCH):
        batch = keys[start:start + WRITE_BATCH]
        held = store.get(batch)
        missing = {k: rows[k] for k in batch if k not in held}
        if missing:
            store.put(missing)
            written += len(missing)
        if (start // WRITE_BATCH + 1) % (PROGRESS_EVERY // WRITE_BATCH) == 0:
            out(f"  checked {start + len(batch):,} of {len(keys):,} rows, wrote {written:,}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow identity-seed", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bq_dataset", help="PROJECT:DATASET holding lead_events and lead_merges")
    src.add_argument("--from_dir", help="a bounded run's --output_dir (lead_events.jsonl, lead_merges.jsonl)")
    ap.add_argument("--identity_store", required=True, help=f"the store the new job will use: {SPEC_HELP}")
    ap.add_argument("--identity_max_companions", type=int, default=IdentityConfig.max_companions)
    ap.add_argument("--identity_fan_in_days", type=float, default=IdentityConfig.fan_in_window_days)
    ap.add_argument("--dry_run", action="store_true", help="read and count; write nothing")
    args = ap.parse_args(argv)
    try:
        check_spec(args.identity_store)
        if args.bq_dataset:
            parse_dataset(args.bq_dataset)
    except ValueError as e:
        ap.error(str(e))
    if args.identity_store.startswith("memory"):
        ap.error("a memory store ends with this process: seed a sqlite: or bigtable: store")

    started = time.monotonic()
    events, merges, read = read_tables(args)
    config = IdentityConfig(store=args.identity_store, max_companions=args.identity_max_companions,
                            fan_in_window_days=args.identity_fan_in_days)
    rows = seed_rows(events, merges, config)
    built_s = time.monotonic() - started
    persons = sum(1 for k, v in rows.items() if k.startswith("p:") and v["into"] is None)
    identifiers = sum(1 for k in rows if k.startswith("i:"))
    shared = sum(1 for k, v in rows.items() if k.startswith("i:") and v["shared"])
    print(f"read {read[0]:,} events and {len(merges):,} merges, built the rows in {built_s:.1f} s: "
          f"{persons:,} persons, {identifiers:,} identifiers ({shared:,} shared), "
          f"{len(rows) - persons - identifiers:,} merged leads", flush=True)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    store = open_store(args.identity_store, create=True)
    try:
        written = write_missing(store, rows, lambda line: print(line, flush=True))
    finally:
        store.close()
    total_s = time.monotonic() - started
    rate = persons / total_s if total_s else 0.0
    print(f"wrote {written:,} rows ({len(rows) - written:,} already held) in {total_s - built_s:.1f} s; "
          f"{total_s:.1f} s in all, {rate:,.0f} persons/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
