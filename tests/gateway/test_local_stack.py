"""``leadflow local up --gateway``: the gateway starts after the topics, with generated secrets that a sender reads
from the stack home; a signed request reaches the pipeline's input subscription; ``status`` shows it; ``down``
stops it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat

import httpx
import pytest

from infra.local import stack as local_stack
from infra.local.graph_stand_in import GraphStandIn
from infra.local.processes import free_port
from schemas.resources import INPUT_SUBSCRIPTION
from tests.gateway.conftest import fixture_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_local_up_with_the_gateway(tmp_path, monkeypatch):
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(), bigquery_grpc_port=free_port(),
                                  scorer=False, gateway=True, gateway_port=free_port(), smtp_port=free_port(),
                                  meta_graph_port=free_port(), home=tmp_path / "stack")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", cfg.pubsub_host)  # up() points this process at its emulator
    lines: list[str] = []
    try:
        local_stack.up(cfg, out=lines.append)
        assert any(line.startswith("gateway: started") for line in lines)
        client_file = cfg.home / "gateway-client.json"
        assert stat.S_IMODE(os.stat(client_file).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(cfg.home / "gateway.json").st_mode) == 0o600
        client = json.loads(client_file.read_text())
        assert client["api_key"] not in (cfg.home / "gateway.json").read_text()  # only its hash is configured

        body = fixture_bytes("meta_leadgen_webhook.json")
        wrong = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
        bad = httpx.post(cfg.gateway_url + "/webhooks/meta", content=body, headers={"X-Hub-Signature-256": wrong})
        assert bad.status_code == 403
        # the stack's Graph API stand-in serves the lead objects put in its directory, to the gateway's page token
        GraphStandIn(client["meta_page_access_token"], cfg.meta_graph_dir).add_lead(
            "900000000000001", fixture_bytes("meta_graph_lead.json"))
        signed = "sha256=" + hmac.new(client["meta_app_secret"].encode(), body, hashlib.sha256).hexdigest()
        meta = httpx.post(cfg.gateway_url + "/webhooks/meta", content=body, headers={"X-Hub-Signature-256": signed})
        assert meta.json()["published"] == 1, meta.text
        google = fixture_bytes("google_ads_lead.json").replace(b"{{GOOGLE_KEY}}", client["google_ads_key"].encode())
        assert httpx.post(cfg.gateway_url + "/webhooks/google-ads", content=google).status_code == 200
        ok = httpx.post(cfg.gateway_url + "/v1/leads", json={"external_id": "L-1", "phone": "+14155550123"},
                        headers={"X-API-Key": client["api_key"]})
        assert ok.status_code == 202, ok.text

        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        pulled = subscriber.pull(request={"subscription": cfg.subscription(INPUT_SUBSCRIPTION),
                                          "max_messages": 10}, timeout=10)
        got = sorted((m.message.attributes["provider"], m.message.attributes.get("client_id"))
                     for m in pulled.received_messages)
        assert got == [("api", "local"), ("google_ads_lead_form", None), ("meta_lead_ads", None)]
        subscriber.close()

        report: list[str] = []
        assert local_stack.status(cfg, out=report.append)
        assert any(line.startswith("gateway: running") for line in report)
        assert any(line.startswith("meta_graph: running") for line in report)
        again: list[str] = []
        local_stack.up(cfg, out=again.append)  # idempotent; the secrets are kept
        assert any(line.startswith("gateway: already running") for line in again)
        assert json.loads(client_file.read_text())["api_key"] == client["api_key"]
    finally:
        local_stack.down(cfg, out=lines.append)
    assert any(line.startswith("gateway: stopped") for line in lines)
