"""How long the lead-operations dashboard takes to load and to refresh, over a bounded run landed in the BigQuery
emulator.

    python -m pipelines.dev.dashboard_bench                          # the bundled sample (run here with its agents)
    python -m pipelines.dev.dashboard_bench --run_dir out/ --refreshes 5 --json .bench/dashboard.json

``--run_dir`` is a bounded run's output directory (``leadflow run --output_dir``), e.g. of 100,000 messages from
``leadflow generate``. The tables are inserted into a fresh emulator on free ports, ``leadflow dashboard`` is started
as its own process, and the page is fetched over HTTP: the first load (cold: the emulator's query translations and
the Vega engine not warmed), then ``--refreshes`` reloads, which is what the page's auto-refresh does. Each line
shows the wall time of the request and the part the page itself reports as BigQuery query time; the rest is
rendering the charts to SVG and serving the page. A browser then draws the SVG (not timed here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from infra.local import bigquery_emulator as bqe
from infra.local.processes import free_port, stop_process
from schemas import bigquery as bq
from schemas.records import TABLES
from schemas.resources import DATASET, LOCAL_PROJECT

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "pipelines" / "synthetic" / "samples"
BATCH = 2000


def sample_run(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pipelines.cli", "run", f"--input_file={SAMPLE / 'messages.jsonl'}",
                    f"--agent_events_file={SAMPLE / 'agent_events.jsonl'}", f"--output_dir={out}"],
                   check=True, capture_output=True, cwd=REPO)
    return out


def land(client, run_dir: Path) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        path = run_dir / f"{table}.jsonl"
        if not path.exists():
            continue
        batch, n = [], 0
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    batch.append(json.loads(line))
                if len(batch) == BATCH:
                    n += _insert(client, table, batch)
                    batch = []
        n += _insert(client, table, batch)
        counts[table] = n
    return counts


def _insert(client, table: str, rows: list[dict]) -> int:
    if rows:
        errors = client.insert_rows_json(f"{LOCAL_PROJECT}.{DATASET}.{table}", rows)
        if errors:
            raise RuntimeError(f"{table}: {errors[:2]}")
    return len(rows)


def fetch(url: str) -> tuple[float, float, int]:
    """(wall seconds, the page's own query seconds, bytes) of one page load."""
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=600) as resp:
        body = resp.read().decode()
    wall = time.monotonic() - started
    query = float(re.search(r"queries ([0-9.]+) s", body).group(1))
    return wall, query, len(body.encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.dev.dashboard_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", type=Path, help="a bounded run's output directory (default: the bundled sample)")
    ap.add_argument("--refreshes", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    run_dir = args.run_dir or sample_run(work / "sample")
    emulator = dashboard = None
    try:
        emulator = bqe.start(port=free_port(), grpc_port=free_port(), log_path=str(work / "bqemulator.log"),
                             ready_timeout=120)
        client = bq.client_for(LOCAL_PROJECT, emulator.host_port)
        bq.ensure_dataset_and_tables(LOCAL_PROJECT, DATASET, client=client)
        t0 = time.monotonic()
        rows = land(client, run_dir)
        land_s = time.monotonic() - t0
        print(f"landed {sum(rows.values()):,} rows in {land_s:.1f} s: "
              + ", ".join(f"{k} {v:,}" for k, v in rows.items() if v))
        port = free_port()
        env = {**os.environ, bq.EMULATOR_HOST_ENV: emulator.host_port}
        log = (work / "dashboard.log").open("wb")
        t0 = time.monotonic()
        dashboard = subprocess.Popen([sys.executable, "-m", "dashboard", "--port", str(port),
                                      "--bq_dataset", f"{LOCAL_PROJECT}:{DATASET}"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=REPO)
        url = f"http://127.0.0.1:{port}/"
        while True:
            try:
                urllib.request.urlopen(url + "healthz", timeout=2).close()
                break
            except OSError:
                if dashboard.poll() is not None:
                    tail = (work / "dashboard.log").read_text()[-2000:]
                    raise RuntimeError(f"the dashboard exited: {tail}") from None
                time.sleep(0.1)
        start_s = time.monotonic() - t0
        first = fetch(url)
        refreshes = [fetch(url) for _ in range(args.refreshes)]
        walls = [r[0] for r in refreshes]
        figures = {
            "run_dir": str(run_dir), "rows": rows, "land_s": round(land_s, 1), "dashboard_start_s": round(start_s, 2),
            "first_load_s": round(first[0], 2), "first_load_query_s": first[1], "page_bytes": first[2],
            "refresh_s": [round(w, 2) for w in walls], "refresh_query_s": [r[1] for r in refreshes],
            "refresh_median_s": round(statistics.median(walls), 2) if walls else None,
            "load_average": os.getloadavg()[0],
        }
        print(f"dashboard up in {start_s:.2f} s; first load {first[0]:.2f} s (queries {first[1]:.2f} s), "
              f"{first[2] / 1024:.0f} KB; refresh median {figures['refresh_median_s']} s "
              f"(each {', '.join(f'{w:.2f}' for w in walls)}; queries {', '.join(f'{r[1]:.2f}' for r in refreshes)}); "
              f"1-min load average {figures['load_average']:.2f}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    finally:
        if dashboard is not None:
            stop_process(dashboard, timeout=10)
        if emulator is not None:
            bqe.stop(emulator)


if __name__ == "__main__":
    sys.exit(main())
