"""``leadflow meta-backfill`` against the Graph API stand-in (bulk read, paging, a transient error) and the real
Pub/Sub emulator; what it publishes parses as Meta leads."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from gateway import backfill
from gateway.meta_graph import GraphClient
from gateway.publishing import PubSubPublisher
from tests.gateway.conftest import fixture_bytes
from transforms.parsers.base import ParseConfig
from transforms.parsers.registry import parse_payload
from transforms.sources import SourceRegistry

pytestmark = pytest.mark.e2e
FORM = "555555555"


def leads(*ids: str) -> list[dict]:
    base = json.loads(fixture_bytes("meta_graph_lead.json"))
    return [{**base, "id": i} for i in ids]


def test_since_time():
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert backfill.since_time("24h", now) == datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert backfill.since_time("15m", now) == datetime(2026, 12, 3, 11, 45, tzinfo=UTC)
    assert backfill.since_time("2026-12-01T00:00:00Z") == datetime(2026, 12, 1, tzinfo=UTC)
    assert backfill.since_time("2026-12-01T00:00:00") == datetime(2026, 12, 1, tzinfo=UTC)


def test_backfill_reads_every_page_and_publishes_each_lead(make_config, bus, graph):
    graph.forms[FORM] = [leads("1001", "1002"), leads("1003")]
    graph.failures[f"{FORM}/leads"] = [(503, b'{"error":{"message":"Service temporarily unavailable",'
                                             b'"type":"OAuthException","code":2,"fbtrace_id":"x"}}')]
    config = make_config()
    since = datetime(2026, 12, 2, tzinfo=UTC)

    async def run():
        g = GraphClient(config.meta_graph_url, config.meta_page_access_token, backoff=0.01)
        publisher = PubSubPublisher(5.0)
        try:
            return await backfill.backfill(config, g, publisher, FORM, since)
        finally:
            await g.close()
            publisher.close()

    report = asyncio.run(run())
    assert (report.pages, report.leads, report.published, report.error) == (2, 3, 3, None)
    (filtering,) = set(graph.filters)
    assert json.loads(filtering) == [{"field": "time_created", "operator": "GREATER_THAN",
                                      "value": int(since.timestamp())}]
    messages = bus.pull("input", 3)
    assert sorted(m.attributes["leadgen_id"] for m in messages) == ["1001", "1002", "1003"]
    config_parse = ParseConfig(SourceRegistry.from_csv())
    for m in messages:
        assert m.attributes["backfill"] == "true" and m.attributes["form_id"] == FORM
        provider, parsed = parse_payload(m.data.decode(), dict(m.attributes), config_parse)
        assert provider == "meta_lead_ads" and parsed[0].external_id == m.attributes["leadgen_id"]


def test_command_dry_run_and_a_bad_token(bus, graph, monkeypatch, capsys):
    graph.forms[FORM] = [leads("2001")]
    monkeypatch.setenv("LEADFLOW_PROJECT", bus.project)
    monkeypatch.setenv("LEADFLOW_META_GRAPH_URL", graph.url)
    monkeypatch.setenv("LEADFLOW_META_PAGE_ACCESS_TOKEN", graph.token)
    assert backfill.main(["--form_id", FORM, "--since", "24h", "--dry-run"]) == 0
    assert "1 leads" in capsys.readouterr().out
    assert bus.pull("input", 0, timeout=0.5) == []
    monkeypatch.setenv("LEADFLOW_META_PAGE_ACCESS_TOKEN", "expired")
    assert backfill.main(["--form_id", FORM]) == 1
    out = capsys.readouterr().out
    assert "stopped: graph_http_400:OAuthException:code_190" in out and "expired" not in out
