"""From the front door to a BigQuery row: signed provider webhooks and an API post through the gateway, the
messages Pub/Sub holds run through the lead pipeline (bounded, the same graph as streaming) into the BigQuery
emulator, and each becomes its ``lead_events`` row (the Meta lead read from the Graph API stand-in, by its id).
The stream itself (``leadflow run --streaming`` on the subscription) is left to tests/e2e: it costs a minute of CPU."""

from __future__ import annotations

import json

import pytest

from gateway.app import create_app
from schemas import bigquery as bq
from tests.gateway.conftest import fixture_bytes
from tests.gateway.test_webhooks import meta_sign, twilio_post
from tests.helpers.bigquery import PROJECT, new_dataset
from transforms.messages import InputMessage, as_dict

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_signed_webhooks_become_lead_event_rows(make_config, bus, graph, test_secrets, bigquery_emulator, tmp_path):
    from fastapi.testclient import TestClient

    from pipelines import lead_pipeline

    graph.leads["900000000000001"] = fixture_bytes("meta_graph_lead.json")
    meta = fixture_bytes("meta_leadgen_webhook.json")
    with TestClient(create_app(make_config())) as c:
        assert c.post("/webhooks/meta", content=meta, headers={
            "X-Hub-Signature-256": meta_sign(meta, test_secrets.meta_app_secret)}).json()["kept_for_retry"] == 1
        assert twilio_post(c, "/webhooks/twilio/sms", fixture_bytes("twilio_sms.form"),
                           test_secrets.twilio_auth_token).status_code == 200
        assert c.post("/v1/leads", json={"external_id": "BQ-1", "email": "bq.person@example.com"},
                      headers={"X-API-Key": test_secrets.api_key}).status_code == 202
    messages = bus.pull("input", 3)
    assert len(messages) == 3
    path = tmp_path / "messages.jsonl"
    with path.open("w") as out:
        for m in messages:
            msg = InputMessage(m.message_id, m.data, dict(m.attributes), m.publish_time)
            out.write(json.dumps(as_dict(msg)) + "\n")

    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    lead_pipeline.run([f"--input_file={path}", f"--bq_dataset={PROJECT}:{dataset}", "--bq_backend=client"])
    rows = [dict(r) for r in client.query(
        f"SELECT message_id, provider, outcome, external_id FROM `{PROJECT}.{dataset}.lead_events`").result()]
    by_message = {r["message_id"]: r for r in rows}
    assert set(by_message) == {m.message_id for m in messages}
    assert sorted(r["provider"] for r in rows) == ["api", "meta_lead_ads", "twilio_sms"]
    outcome = {r["provider"]: r["outcome"] for r in rows}
    assert outcome["api"] == "new"
    # the Meta lead and the SMS come from the same phone: one person, the second source is cross_source
    assert sorted([outcome["meta_lead_ads"], outcome["twilio_sms"]]) == ["cross_source", "new"]
    assert {r["external_id"] for r in rows} >= {"900000000000001", "BQ-1"}
    dead = list(client.query(f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.dead_letters`").result())
    assert dead[0]["n"] == 0
