"""``GET /v1/leads/status/{message_id}``: the pipeline's outcome of a message a client sent, from BigQuery.

Leads posted through the gateway, the published messages run through the lead pipeline (bounded) into the BigQuery
emulator: before the run a message is pending; after it, new with its lead id, a repeat of the same person with
that lead id, a blocked contact with its dead letter's reason. Another client's message is unknown to a client; a
repeated external_id gets 409 with the first message id and now its lead id."""

from __future__ import annotations

import json

import pytest

from gateway.app import create_app
from gateway.status import MAX_UNITS, status_of
from schemas import bigquery as bq
from tests.helpers.bigquery import PROJECT, new_dataset
from transforms.messages import InputMessage, as_dict


def test_the_answer_from_the_tables_rows():
    assert status_of("m1", [], []) == {"message_id": "m1", "status": "pending"}
    assert status_of("m1", [{"message_id": "m1", "outcome": "new", "lead_id": "L1"}], []) == {
        "message_id": "m1", "status": "processed", "outcome": "new", "lead_id": "L1"}
    dead = status_of("m2", [], [{"message_id": "m2", "stage": "normalize", "error_type": "blocked_contact"}])
    assert (dead["outcome"], dead["stage"], dead["error_type"]) == ("dead_letter", "normalize", "blocked_contact")
    upload = status_of("u", [{"message_id": "u#2", "outcome": "new", "lead_id": "L2"}],
                       [{"message_id": "u#1", "stage": "normalize", "error_type": "no_contact"}])
    assert [x["unit"] for x in upload["units"]] == ["u#1", "u#2"] and upload["truncated"] is False
    many = status_of("u", [{"message_id": f"u#{i}", "outcome": "new", "lead_id": "L"} for i in range(MAX_UNITS + 1)],
                     [])
    assert len(many["units"]) == MAX_UNITS and many["truncated"] is True


def test_without_a_dataset_the_lookup_is_not_served(make_config, test_secrets):
    from fastapi.testclient import TestClient

    key = {"X-API-Key": test_secrets.api_key}
    with TestClient(create_app(make_config())) as c:
        assert c.get("/v1/leads/status/123").status_code == 401
        assert c.get("/v1/leads/status/123", headers=key).status_code == 404  # not this client's message
        sent = c.post("/v1/leads", json={"external_id": "N-1", "email": "n1@example.com"}, headers=key)
        r = c.get(f"/v1/leads/status/{sent.json()['message_id']}", headers=key)
        assert (r.status_code, r.json()["error"]) == (501, "status_not_configured")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_client_reads_what_the_pipeline_made_of_its_leads(make_config, bus, test_secrets, bigquery_emulator,
                                                            tmp_path):
    from fastapi.testclient import TestClient

    from pipelines import lead_pipeline

    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    mine, theirs = {"X-API-Key": test_secrets.api_key}, {"X-API-Key": test_secrets.other_api_key}
    with TestClient(create_app(make_config(status_dataset=f"{PROJECT}:{dataset}"))) as c:
        sent = [c.post("/v1/leads", json=lead, headers=mine).json()["message_id"] for lead in (
            {"external_id": "S-1", "email": "status.person@example.com", "full_name": "Status Person"},
            {"external_id": "S-2", "email": "status.person@example.com"},
            {"external_id": "S-3", "email": "none@none.com"})]
        other = c.post("/v1/leads", json={"external_id": "S-9", "email": "another@example.com"},
                       headers=theirs).json()["message_id"]
        assert c.get(f"/v1/leads/status/{sent[0]}", headers=mine).json()["status"] == "pending"

        messages = bus.pull("input", 4)
        path = tmp_path / "messages.jsonl"
        path.write_text("".join(json.dumps(as_dict(InputMessage(m.message_id, m.data, dict(m.attributes),
                                                                m.publish_time))) + "\n" for m in messages))
        lead_pipeline.run([f"--input_file={path}", f"--bq_dataset={PROJECT}:{dataset}", "--bq_backend=client"])

        first, again, blocked = (c.get(f"/v1/leads/status/{m}", headers=mine).json() for m in sent)
        assert (first["status"], first["outcome"]) == ("processed", "new") and first["lead_id"]
        assert (again["outcome"], again["lead_id"]) == ("duplicate_same_source", first["lead_id"])
        assert (blocked["outcome"], blocked["stage"], blocked["error_type"]) == (
            "dead_letter", "normalize", "blocked_contact")
        assert "none@none.com" not in json.dumps(blocked)  # the reason, never the payload
        r = c.get(f"/v1/leads/status/{other}", headers=mine)  # never another client's outcome
        assert (r.status_code, r.json()["error"]) == (404, "unknown_message_id")
        assert c.get(f"/v1/leads/status/{other}", headers=theirs).json()["outcome"] == "new"
        repeat = c.post("/v1/leads", json={"external_id": "S-1", "email": "status.person@example.com"}, headers=mine)
        assert repeat.status_code == 409
        assert repeat.json()["first_message_id"] == sent[0] and repeat.json()["lead_id"] == first["lead_id"]
