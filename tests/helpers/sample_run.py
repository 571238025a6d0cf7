"""The ``sample_landed`` session fixture: the bounded pipeline over the bundled sample (with its simulated agent
events, scored in-process by a LightGBM model trained here on 2,000 generated history rows, as ``leadflow local up``
trains its own, so leads carry model scores and tiers), its tables loaded into a dataset of their own in the
BigQuery emulator (the ``bigquery_emulator`` fixture).

A pytest plugin (``pytest_plugins`` in tests/conftest.py). The dashboard, its browser test and ``leadflow trace``
read the same landed run, so the pipeline runs once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas import bigquery as bq
from tests.helpers.bigquery import PROJECT, insert, new_dataset

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "pipelines" / "synthetic" / "samples" / "messages.jsonl"
AGENT_EVENTS = REPO / "pipelines" / "synthetic" / "samples" / "agent_events.jsonl"
LANDED_TABLES = ("leads", "lead_events", "lead_source_history", "dead_letters", "source_daily_counts",
                 "lead_assignments", "lead_versions", "lead_merges", "agent_status")


@dataclass
class LandedRun:
    client: object  # bigquery.Client on the emulator
    host_port: str
    dataset: str  # in PROJECT
    out: Path  # the bounded run's files
    tables: dict[str, list[dict]]  # what was inserted, per table

    @property
    def bq_dataset(self) -> str:
        return f"{PROJECT}:{self.dataset}"


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def sample_landed(bigquery_emulator, tmp_path_factory):
    from pipelines.synthetic import history
    from scoring import train

    work = tmp_path_factory.mktemp("sample_run")
    out, bentoml_home = work / "out", work / "bentoml"
    model = train.train(history.generate_history(2000, seed=1))
    tag = train.save(model, work / "model", bentoml_home=str(bentoml_home))
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", f"--input_file={SAMPLE}",
         f"--agent_events_file={AGENT_EVENTS}", f"--output_dir={out}", "--scorer=inprocess",
         f"--scorer_model={tag}", f"--scorer_model_store={bentoml_home / 'models'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "BENTOML_HOME": str(bentoml_home)})
    assert run.returncode == 0, run.stderr[-3000:]
    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    tables = {}
    for table in LANDED_TABLES:
        tables[table] = read_jsonl(out / f"{table}.jsonl")
        if tables[table]:
            insert(client, dataset, table, tables[table])
    yield LandedRun(client, bigquery_emulator, dataset, out, tables)
    client.close()
