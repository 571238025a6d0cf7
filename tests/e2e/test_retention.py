"""Retention in ``leadflow local up``'s tables: partitions expire per schemas.records.RETENTION_DAYS (dead letters
after 30 days), a ``--retention POLICY=DAYS`` overrides a policy, and a second ``up`` brings existing tables to it."""

from __future__ import annotations

import pytest

from infra.local import stack as local_stack
from infra.local.processes import free_port
from schemas import bigquery as bq
from schemas.records import RETENTION_DAYS, TABLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DAY_MS = 86_400_000


def _expirations(cfg) -> dict[str, int | None]:
    client = bq.client_for(cfg.project, cfg.bigquery_host)
    try:
        return {n: client.get_table(f"{cfg.project}.{cfg.dataset}.{n}").time_partitioning.expiration_ms
                for n in TABLES}
    finally:
        client.close()


def test_local_up_creates_tables_whose_partitions_expire_by_the_retention_settings(tmp_path, monkeypatch):
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(), bigquery_grpc_port=free_port(),
                                  scorer=False, gateway=False, home=tmp_path / "stack", retention={"events": 400})
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", cfg.pubsub_host)
    lines: list[str] = []
    try:
        local_stack.up(cfg, out=lines.append)
        got = _expirations(cfg)
        assert got["dead_letters"] == RETENTION_DAYS["dead_letters"] * DAY_MS == 30 * DAY_MS
        assert got["lead_events"] == got["lead_assignments"] == 400 * DAY_MS
        assert got["leads"] is None and got["lead_versions"] is None and got["erasures"] is None
        assert {n for n, ms in got.items() if ms} == {n for n, s in TABLES.items()
                                                      if s.retention in ("dead_letters", "events")}
        cfg.retention = {"dead_letters": 7, "history": 3650}
        again: list[str] = []
        local_stack.up(cfg, out=again.append)
        got = _expirations(cfg)
        assert (got["dead_letters"], got["lead_events"], got["lead_versions"]) == (
            7 * DAY_MS, RETENTION_DAYS["events"] * DAY_MS, 3650 * DAY_MS)
        assert any("dead_letters (partitions now kept 7 days)" in line for line in again)
    finally:
        local_stack.down(cfg, out=lines.append)


def test_a_bad_retention_setting_is_refused_clearly():
    assert bq.parse_retention(["events=365", "history=none"]) == {"events": 365.0, "history": None}
    for bad in ("events", "forever=3", "events=soon", "events=0.001"):
        with pytest.raises(ValueError, match="retention"):
            bq.parse_retention([bad])
    with pytest.raises(SystemExit):
        local_stack.main(["up", "--retention", "events=soon"])
