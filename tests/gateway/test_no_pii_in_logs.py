"""No PII and no secrets in the gateway's logs: good, bad and odd requests of every kind, with every log record of
every logger captured at DEBUG."""

from __future__ import annotations

import logging
import smtplib

import pytest

from gateway.smtp import start_smtp
from infra.local.processes import free_port
from tests.gateway.conftest import fixture_bytes
from tests.gateway.test_webhooks import google_body, meta_sign, twilio_post

pytestmark = pytest.mark.e2e

PII = ("+14155550123", "4155550123", "test.person@example.com", "Test Person", "+919876543210", "Elm St")


def test_logs_hold_no_pii_or_secrets(client, bus, graph, test_secrets, caplog):
    caplog.set_level(logging.DEBUG)
    graph.leads["900000000000001"] = fixture_bytes("meta_graph_lead.json")
    meta = fixture_bytes("meta_leadgen_webhook.json")
    client.post("/webhooks/meta", content=meta, headers={"X-Hub-Signature-256": meta_sign(
        meta, test_secrets.meta_app_secret)})
    client.post("/webhooks/meta", content=meta, headers={"X-Hub-Signature-256": "sha256=00"})
    client.post("/webhooks/google-ads", content=google_body(test_secrets.google_ads_key))
    client.post("/webhooks/google-ads", content=google_body("wrong"))
    twilio_post(client, "/webhooks/twilio/sms", fixture_bytes("twilio_sms.form"), test_secrets.twilio_auth_token)
    twilio_post(client, "/webhooks/twilio/sms", fixture_bytes("twilio_sms.form"), "wrong")
    twilio_post(client, "/webhooks/twilio/status", fixture_bytes("twilio_message_status.form"),
                test_secrets.twilio_auth_token)
    client.post("/webhooks/knowlarity", content=fixture_bytes("knowlarity_call.json"),
                params={"secret": test_secrets.knowlarity_secret})
    client.post("/webhooks/email", content=fixture_bytes("email_lead.eml"),
                headers={"X-Leadflow-Secret": test_secrets.email_secret})
    key = {"X-API-Key": test_secrets.api_key}
    client.post("/v1/leads", json={"external_id": "N-1", "phone": "+14155550123", "full_name": "Test Person"},
                headers=key)
    client.post("/v1/leads", json={"external_id": "N-1", "phone": "+14155550123"}, headers=key)  # 409
    client.post("/v1/leads", json={"phone": "+14155550123", "email": "test.person@example.com", "bad": 1},
                headers=key)  # 400
    client.post("/v1/uploads", files={"file": ("u.csv", fixture_bytes("upload.csv"), "text/csv")}, headers=key)
    client.post("/v1/leads", json={"external_id": "N-2"}, headers={"X-API-Key": "test.person@example.com"})
    smtp = start_smtp(client.app.state.door, port=free_port())  # aiosmtpd logs commands, envelope addresses too
    try:
        with smtplib.SMTP(smtp.hostname, smtp.port, timeout=10) as s:
            s.sendmail("test.person@example.com", ["test.person@example.com"], fixture_bytes("email_lead.eml"))
    finally:
        smtp.stop()
    assert len(bus.pull("input", 8)) == 8
    # the test's own HTTP client logs the URLs it calls (with the ?secret= it was given): not the gateway's logs
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args}" for r in caplog.records
                     if "http://testserver" not in r.getMessage())
    assert "gateway" in text  # the gateway did log
    for value in (*PII, test_secrets.knowlarity_secret, test_secrets.api_key, test_secrets.meta_app_secret,
                  graph.token):
        assert value not in text, value
