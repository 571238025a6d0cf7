"""The committed OpenAPI document is the one the app serves, and the gateway never loads Beam."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from gateway import openapi
from gateway.app import create_app
from gateway.config import GatewayConfig

REPO = Path(__file__).resolve().parents[2]


def test_committed_document_equals_the_served_one():
    app = create_app(GatewayConfig(), publisher=openapi._NoPublisher())
    with TestClient(app) as c:
        served = c.get("/openapi.json").json()
    committed = json.loads((REPO / "docs" / "gateway-openapi.json").read_text())
    assert served == committed, "docs/gateway-openapi.json is stale: run python -m gateway.openapi"
    assert openapi.document() == (REPO / "docs" / "gateway-openapi.json").read_text()
    assert served["components"]["schemas"]["Lead"]["properties"]["external_id"]["maxLength"] == 200
    assert {"/v1/leads", "/v1/uploads", "/webhooks/meta", "/webhooks/twilio/sms"} <= set(served["paths"])


def test_the_gateway_loads_neither_beam_nor_the_job():
    code = ("import sys, gateway.app, gateway.server, gateway.smtp; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'pipelines', 'infra', 'scoring')]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
