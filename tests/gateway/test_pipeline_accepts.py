"""What the gateway publishes is what the pipeline's parsers accept: each published message, with its attributes,
goes through ``transforms.parsers.registry.parse_payload`` to a lead of the right provider."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import fixture_bytes
from tests.gateway.test_webhooks import google_body, meta_sign, twilio_post
from transforms.parsers.base import ParseConfig
from transforms.parsers.registry import parse_payload
from transforms.sources import SourceRegistry

pytestmark = pytest.mark.e2e


def test_every_provider_message_parses(client, bus, graph, test_secrets):
    graph.leads["900000000000001"] = fixture_bytes("meta_graph_lead.json")
    graph.leads["900000000000002"] = fixture_bytes("meta_graph_lead.json").replace(b"000001", b"000002")
    meta = fixture_bytes("meta_leadgen_webhook.json")
    assert client.post("/webhooks/meta", content=meta, headers={
        "X-Hub-Signature-256": meta_sign(meta, test_secrets.meta_app_secret)}).status_code == 200
    assert client.post("/webhooks/google-ads", content=google_body(test_secrets.google_ads_key)).status_code == 200
    for path, name in (("/webhooks/twilio/sms", "twilio_sms.form"), ("/webhooks/twilio/voice", "twilio_voice.form")):
        assert twilio_post(client, path, fixture_bytes(name), test_secrets.twilio_auth_token).status_code == 200
    assert client.post("/webhooks/knowlarity", content=fixture_bytes("knowlarity_call.json"),
                       headers={"X-Leadflow-Secret": test_secrets.knowlarity_secret}).status_code == 200
    assert client.post("/webhooks/email", content=fixture_bytes("email_lead.eml"),
                       headers={"X-Leadflow-Secret": test_secrets.email_secret}).status_code == 200
    assert client.post("/v1/leads", json={"external_id": "P-1", "email": "test@example.com"},
                       headers={"X-API-Key": test_secrets.api_key}).status_code == 202
    assert client.post("/v1/uploads", files={"file": ("u.csv", fixture_bytes("upload.csv"), "text/csv")},
                       headers={"X-API-Key": test_secrets.api_key}).status_code == 202
    messages = bus.pull("input", 10)
    # the pipeline checks google_key too, with the same default key
    config = ParseConfig(SourceRegistry.from_csv(), google_ads_key=test_secrets.google_ads_key)
    parsed = {}
    for m in messages:
        provider, leads = parse_payload(m.data.decode("utf-8"), dict(m.attributes), config)
        assert provider == m.attributes["provider"] and leads
        parsed.setdefault(provider, []).extend(leads)
    assert {p: len(v) for p, v in parsed.items()} == {
        "meta_lead_ads": 2, "google_ads_lead_form": 1, "twilio_sms": 1, "twilio_voice": 1, "knowlarity_call": 1,
        "inbound_email": 1, "api": 1, "csv_upload": 2}
