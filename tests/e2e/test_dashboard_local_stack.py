"""``leadflow local up`` starts the dashboard once the views exist: it answers on its port over the stack's (empty)
dataset, every panel says it has no rows instead of failing, ``status`` shows it and ``down`` stops it."""

from __future__ import annotations

import urllib.request

import pytest

from dashboard.panels import PANELS
from infra.local import stack as local_stack
from infra.local.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_local_up_starts_the_dashboard(tmp_path, monkeypatch):
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(), bigquery_grpc_port=free_port(),
                                  scorer=False, dashboard=True, dashboard_port=free_port(), home=tmp_path / "stack")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", cfg.pubsub_host)
    lines: list[str] = []
    try:
        local_stack.up(cfg, out=lines.append)
        assert any(line.startswith("dashboard: started") for line in lines), lines
        with urllib.request.urlopen(cfg.dashboard_url + "/", timeout=60) as resp:
            page = resp.read().decode()
        assert f"{cfg.project}.{cfg.dataset}" in page
        for panel in PANELS:
            assert f'data-panel="{panel.name}"' in page
        # an empty dataset: no rows anywhere but the funnel's zeros, and no error
        assert page.count("No rows for these filters.") == len(PANELS) - 1
        report: list[str] = []
        assert local_stack.status(cfg, out=report.append)
        assert any(r.startswith("dashboard: running") for r in report), report
    finally:
        local_stack.down(cfg, out=lines.append)
    assert any(line.startswith("dashboard: stopped") for line in lines)
