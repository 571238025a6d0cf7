"""Scorer benchmark: the BentoML service over HTTP beside the in-process booster, on the same rows.

Trains a model on generated history into a private BentoML store (``.bench/bentoml``), starts a real
``bentoml serve scoring.service:LeadScorer`` on a free port, and measures sequential calls from one
client at batch sizes 1, 32 and 256: rows/s and p50/p99 latency per call. Also reports the model's
validation AUC beside the generator's ceiling. Results go to ``.bench/scorer.json``.

    python -m pipelines.dev.scorer_bench [--quick] [--train_only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.local.processes import free_port
from pipelines.synthetic import history
from scoring import train
from scoring.contract import MODEL_ENV
from scoring.features import features_for
from scoring.handlers import format_measurements, load_local_scorer, measure_in_process, measure_scorer

BENCH_DIR = Path(".bench")


def train_model(rows: int = 20000):
    """Train the scorer on generated history into the private store ``.bench/bentoml``: (tag, result, history)."""
    home = (BENCH_DIR / "bentoml").resolve()
    os.environ.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="true")
    df = history.generate_history(rows, seed=0)
    result = train.train(df)
    tag = str(train.save(result, BENCH_DIR / "model", bentoml_home=str(home)))
    print(f"model {tag}: valid AUC {result.metrics['valid_auc']:.4f}, ceiling (true probability) "
          f"{result.metrics['ceiling_auc']:.4f}", flush=True)
    return tag, result, df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Scorer benchmark: BentoML over HTTP vs in-process LightGBM")
    ap.add_argument("--quick", action="store_true", help="fewer calls per batch size (a smoke run)")
    ap.add_argument("--train_only", action="store_true", help="only train the model into .bench/bentoml")
    args = ap.parse_args(argv)
    home = (BENCH_DIR / "bentoml").resolve()
    tag, result, df = train_model(5000 if args.quick else 20000)
    if args.train_only:
        (BENCH_DIR / "model.json").write_text(json.dumps({"model": tag, "store": str(home / "models")}) + "\n")
        return 0
    rows = [features_for(r) for r in df.tail(4096).to_dict("records")]
    sizing = {"min_calls": 5, "max_rows": 512} if args.quick else {}

    port = free_port()
    log = (BENCH_DIR / "scorer.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "scoring.service:LeadScorer", "--host",
                               "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, MODEL_ENV: tag}, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"bentoml serve did not start; see {BENCH_DIR / 'scorer.log'}") from None
                time.sleep(0.5)
        http = measure_scorer(url, rows, **sizing)
        local = measure_in_process(load_local_scorer(tag, str(home / "models")), rows, **sizing)
    finally:
        from infra.local.stack import stop_pid

        stop_pid(server.pid)
        log.close()
    print(format_measurements(http, local))
    report = {"model": tag, "store": str(home / "models"), "valid_auc": result.metrics["valid_auc"],
              "ceiling_auc": result.metrics["ceiling_auc"],
              "http": http, "in_process": local}
    (BENCH_DIR / "scorer.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written {BENCH_DIR / 'scorer.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
