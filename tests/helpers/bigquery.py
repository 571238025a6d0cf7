"""The ``bigquery_emulator`` session fixture: bqemulator on free ports, Leadflow's tables created offline.

A pytest plugin (``pytest_plugins`` in tests/conftest.py): a test requests the fixture by its name. The constants
and the dataset helpers below are plain names, imported from here.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from infra.local import bigquery_emulator as bqe
from infra.local.processes import free_port
from schemas import bigquery as bq

PROJECT = "leadflow-test"
DATASET = "leadflow"
TIMINGS: dict[str, object] = {}


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory):
    """Start bqemulator in memory, create ``leadflow-test.leadflow``, set BIGQUERY_EMULATOR_HOST; yield host:port."""
    log_path = str(tmp_path_factory.mktemp("bqemulator") / "bqemulator.log")
    t0 = time.monotonic()
    proc = bqe.start(port=free_port(), grpc_port=free_port(), log_path=log_path, ready_timeout=90)
    TIMINGS["start_s"] = time.monotonic() - t0
    host_port = proc.host_port
    previous = os.environ.get(bq.EMULATOR_HOST_ENV)
    os.environ[bq.EMULATOR_HOST_ENV] = host_port
    try:
        client = bq.client_for(PROJECT, host_port)
        TIMINGS["first_ensure"] = bq.ensure_dataset_and_tables(PROJECT, DATASET, client=client)
        client.close()
        yield host_port
    finally:
        if previous is None:
            os.environ.pop(bq.EMULATOR_HOST_ENV, None)
        else:
            os.environ[bq.EMULATOR_HOST_ENV] = previous
        bqe.stop(proc)


def new_dataset(client) -> tuple[str, list[str]]:
    """A dataset of its own (a random name) with Leadflow's tables and views: (name, report of what was created)."""
    name = f"v_{uuid.uuid4().hex[:10]}"
    return name, bq.ensure_dataset_and_tables(PROJECT, name, client=client)


def insert(client, dataset: str, table: str, rows: list[dict]) -> None:
    for i in range(0, len(rows), 500):
        errors = client.insert_rows_json(f"{PROJECT}.{dataset}.{table}", rows[i : i + 500])
        assert not errors, errors[:3]


def query(client, dataset: str, view: str, order_by: str) -> list[dict]:
    return [dict(r) for r in client.query(f"SELECT * FROM `{PROJECT}.{dataset}.{view}` ORDER BY {order_by}").result()]
