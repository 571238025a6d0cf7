"""How long ``leadflow forget`` takes for one person in a dataset of N generated messages, on the BigQuery emulator.

    .venv/bin/python -m pipelines.dev.forget_bench --messages 100000 --work .bench/forget

Generates the messages (``leadflow generate``), runs the bounded pipeline into a private bqemulator (``--bq_backend
client``) with a SQLite identity store, then erases the persons with the most lead ids (merged ones first): each
first as a dry run, then for real, timing the whole command (find, tombstones, DELETEs, store, audit). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from infra.local import bigquery_emulator as bqe
from infra.local.processes import free_port
from pipelines import lead_pipeline
from pipelines.ops import forget
from pipelines.synthetic import generate
from schemas import bigquery as bq
from transforms.identity_store import open_store

PROJECT, DATASET = "leadflow-bench", "forget"


def _persons(tables: forget.Tables, n: int) -> list[str]:
    """Lead ids of the ``n`` persons with the most merged leads, then the most events."""
    rows = tables.query(
        f"SELECT m.into_lead_id AS lead_id, COUNT(*) AS merged FROM {tables.ref('lead_merges')} m "
        "GROUP BY m.into_lead_id ORDER BY merged DESC, lead_id LIMIT 50")
    return [r["lead_id"] for r in rows][:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.dev.forget_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--work", default=".bench/forget")
    ap.add_argument("--persons", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    messages = work / f"messages-{args.messages}.jsonl"
    if not messages.exists():
        generate.main(["--messages", str(args.messages), "--out", str(messages)])
    store_path = work / "identity.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    proc = bqe.start(port=free_port(), grpc_port=free_port(), log_path=str(work / "bqemulator.log"), ready_timeout=90)
    os.environ[bq.EMULATOR_HOST_ENV] = proc.host_port
    result: dict = {"messages": args.messages}
    try:
        client = bq.client_for(PROJECT, proc.host_port)
        bq.ensure_dataset_and_tables(PROJECT, DATASET, client=client)
        t0 = time.monotonic()
        lead_pipeline.run([f"--input_file={messages}", f"--bq_dataset={PROJECT}:{DATASET}", "--bq_backend=client",
                           f"--identity_store=sqlite:{store_path}", "--scorer=none"])
        result["load_s"] = round(time.monotonic() - t0, 1)
        tables = forget.Tables(client, PROJECT, DATASET)
        result["rows"] = {t: tables.query(f"SELECT COUNT(*) AS n FROM {tables.ref(t)}")[0]["n"]
                          for t in ("lead_events", "lead_versions", "lead_assignments", "dead_letters")}
        store = open_store(f"sqlite:{store_path}")
        runs = []
        lines: list[str] = []
        for lead_id in _persons(tables, args.persons):
            timing = {}
            for dry in (True, False):
                t = time.monotonic()
                audit = forget.forget(tables, store, "lead_id", lead_id, requested_by="forget_bench", dry_run=dry,
                                      out=lines.append)
                timing["dry_run_s" if dry else "forget_s"] = round(time.monotonic() - t, 2)
                found = re.findall(r"found in ([0-9.]+) s", "\n".join(lines))[-1]  # this run's
                timing["find_s" if dry else "find_again_s"] = float(found)
            timing.update(leads=audit.leads, rows_deleted=audit.rows_deleted, tombstones=audit.tombstones,
                          rows_by_table=json.loads(audit.rows_by_table))
            runs.append(timing)
        store.close()
        client.close()
        result["persons"] = runs
    finally:
        bqe.stop(proc)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
