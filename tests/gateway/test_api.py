"""Our own API against the real Pub/Sub emulator: keys, field errors, batches, rate limits, idempotency, duplicates,
uploads (CSV and XLSX), the body-size limit."""

from __future__ import annotations

import io
import json

import pytest

from tests.gateway.conftest import fixture_bytes

pytestmark = pytest.mark.e2e


def lead(external_id: str, **fields) -> dict:
    return {"external_id": external_id, "phone": "+14155550123", "full_name": "Test Person", **fields}


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_one_lead_is_published_byte_for_byte_with_the_client_id(client, bus, test_secrets):
    body = b'{"external_id": "A-1",  "email": "test.person@example.com"}'
    r = client.post("/v1/leads", content=body,
                    headers={**auth(test_secrets.api_key), "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    (m,) = bus.pull("input", 1)
    assert r.json()["message_id"] == m.message_id
    assert m.data == body
    assert m.attributes["provider"] == "api" and m.attributes["client_id"] == "acme"


def test_key_in_x_api_key_header_and_missing_or_wrong_key(client, bus, test_secrets):
    assert client.post("/v1/leads", json=lead("K-1"), headers={"X-API-Key": test_secrets.api_key}).status_code == 202
    for headers in ({}, auth("not-a-key"), {"X-API-Key": ""}, {"Authorization": "Basic abc"}):
        r = client.post("/v1/leads", json=lead("K-2"), headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert len(bus.pull("input", 1)) == 1


def test_batch_publishes_one_message_per_lead(client, bus, test_secrets):
    batch = [lead(f"B-{i}") for i in range(25)]
    r = client.post("/v1/leads", json=batch, headers=auth(test_secrets.api_key))
    assert r.status_code == 202
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(25))
    messages = bus.pull("input", 25)
    assert sorted(json.loads(m.data)["external_id"] for m in messages) == sorted(x["external_id"] for x in batch)
    assert {x["message_id"] for x in results} == {m.message_id for m in messages}


def test_batch_limit(client, test_secrets):
    r = client.post("/v1/leads", json=[lead(f"L-{i}") for i in range(501)], headers=auth(test_secrets.api_key))
    assert r.status_code == 400 and "1 to 500" in r.text
    assert client.post("/v1/leads", json=[], headers=auth(test_secrets.api_key)).status_code == 400


def test_400_lists_every_field_error_without_values(client, bus, test_secrets):
    secret_phone, secret_mail = "+1 415 555 0199 9999999999999999999999999999999", "x" * 400 + "@example.com"
    batch = [lead("ok-1"), {"external_id": "", "phone": secret_phone, "email": secret_mail, "colour": "red"},
             {"full_name": "No Contact"}, "not an object"]
    r = client.post("/v1/leads", json=batch, headers=auth(test_secrets.api_key))
    assert r.status_code == 400
    errors = r.json()["errors"]
    found = {(e.get("index"), e["field"]) for e in errors}
    assert {(1, "external_id"), (1, "phone"), (1, "email"), (1, "(root)"), (2, "external_id"),
            (2, "phone or email"), (3, "(root)")} <= found
    assert secret_phone not in r.text and "xxxxxxxxxx" not in r.text and "No Contact" not in r.text
    assert bus.pull("input", 0, timeout=0.5) == []  # a batch with an error publishes nothing
    r = client.post("/v1/leads", content=b'{"external_id": "1", "external_id": "2"}',
                    headers=auth(test_secrets.api_key))
    assert r.status_code == 400 and "json_duplicate_key" in r.text


def test_rate_limit_429_with_retry_after(client, bus, test_secrets):
    codes = [client.post("/v1/leads", json=lead(f"R-{i}"), headers=auth(test_secrets.other_api_key)).status_code
             for i in range(4)]
    assert codes == [202, 202, 202, 429]  # globex may send 3 a minute
    r = client.post("/v1/leads", json=lead("R-9"), headers=auth(test_secrets.other_api_key))
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    # another client's budget is its own
    assert client.post("/v1/leads", json=lead("R-9"), headers=auth(test_secrets.api_key)).status_code == 202
    assert len(bus.pull("input", 4)) == 4


def test_idempotency_key_answers_the_first_response(client, bus, test_secrets):
    headers = {**auth(test_secrets.api_key), "Idempotency-Key": "order-77"}
    first = client.post("/v1/leads", json=lead("I-1"), headers=headers)
    again = client.post("/v1/leads", json=lead("I-1"), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(bus.pull("input", 1)) == 1
    reused = client.post("/v1/leads", json=lead("I-2"), headers=headers)
    assert reused.status_code == 422
    # keys are per client: the same key from another client is another request
    other = client.post("/v1/leads", json=lead("I-1"), headers={**auth(test_secrets.other_api_key),
                                                                 "Idempotency-Key": "order-77"})
    assert other.status_code == 202 and other.json()["message_id"] != first.json()["message_id"]
    # a 400 is a final answer too
    bad = {**auth(test_secrets.api_key), "Idempotency-Key": "bad-1"}
    assert client.post("/v1/leads", json={"x": 1}, headers=bad).status_code == 400
    assert client.post("/v1/leads", json={"x": 1}, headers=bad).headers["idempotent-replayed"] == "true"


def test_duplicate_external_id_is_409_with_the_first_message_id(client, bus, test_secrets):
    first = client.post("/v1/leads", json=lead("D-1"), headers=auth(test_secrets.api_key))
    dup = client.post("/v1/leads", json=lead("D-1", email="other@example.com"), headers=auth(test_secrets.api_key))
    assert dup.status_code == 409 and dup.json()["first_message_id"] == first.json()["message_id"]
    r = client.post("/v1/leads", json=[lead("D-1"), lead("D-2"), lead("D-2")], headers=auth(test_secrets.api_key))
    assert r.status_code == 202
    results = r.json()["results"]
    assert results[0] == {"index": 0, "error": "duplicate_external_id", "first_message_id": first.json()["message_id"]}
    assert "message_id" in results[1] and results[2]["error"] == "duplicate_external_id"
    assert len(bus.pull("input", 2)) == 2


def test_upload_csv_as_it_is(client, bus, test_secrets):
    csv_bytes = fixture_bytes("upload.csv")
    r = client.post("/v1/uploads", files={"file": ("leads.csv", csv_bytes, "text/csv")},
                    headers=auth(test_secrets.api_key))
    assert r.status_code == 202 and r.json()["format"] == "csv"
    (m,) = bus.pull("input", 1)
    assert m.data == csv_bytes and m.attributes["provider"] == "csv_upload" and m.attributes["client_id"] == "acme"


def test_upload_xlsx_becomes_the_csv_the_pipeline_parses(client, bus, test_secrets):
    from openpyxl import Workbook

    from transforms.parsers.base import ParseConfig
    from transforms.parsers.registry import parse_payload
    from transforms.sources import SourceRegistry

    book = Workbook()
    sheet = book.active
    sheet.append(["Lead ID", "Full Name", "Phone Number", "Email", "Created Time"])
    sheet.append(["X-1", "Test Person", 4155550123, "test.person@example.com", "2026-12-03T09:00:00Z"])
    sheet.append(["X-2", "Other Person", "+1 650 555 0188", None, None])
    out = io.BytesIO()
    book.save(out)
    r = client.post("/v1/uploads", files={"file": ("export.xlsx", out.getvalue(), "application/octet-stream")},
                    headers=auth(test_secrets.api_key))
    assert r.status_code == 202 and r.json()["format"] == "xlsx"
    (m,) = bus.pull("input", 1)
    provider, leads = parse_payload(m.data.decode(), dict(m.attributes), ParseConfig(SourceRegistry.from_csv()))
    assert provider == "csv_upload"
    assert [(x.external_id, x.phone) for x in leads] == [("X-1", "4155550123"), ("X-2", "+1 650 555 0188")]


def test_upload_errors_and_size_limit(make_config, bus, test_secrets):
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(make_config(max_upload_bytes=2000, max_body_bytes=500))) as c:
        big = b"phone,email\n" + b"+14155550123,a@example.com\n" * 200
        r = c.post("/v1/uploads", files={"file": ("big.csv", big, "text/csv")}, headers=auth(test_secrets.api_key))
        assert r.status_code == 413
        r = c.post("/v1/uploads", files={"file": ("x.xlsx", b"PK\x03\x04 broken", "application/octet-stream")},
                   headers=auth(test_secrets.api_key))
        assert r.status_code == 400 and r.json()["error"] == "invalid_xlsx"
        r = c.post("/v1/leads", json=[lead(f"S-{i}") for i in range(20)], headers=auth(test_secrets.api_key))
        assert r.status_code == 413  # the body limit applies before the key is even checked
        assert c.post("/webhooks/knowlarity", content=b"x" * 501).status_code == 413
        assert 'outcome="rejected_too_large"} 3' in c.get("/metrics").text
    assert bus.pull("input", 0, timeout=0.5) == []
