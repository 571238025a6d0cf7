"""The gateway's pure parts without HTTP: settings, e-mail classification, API bodies, uploads, Meta notifications,
rate limits and idempotency."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from gateway import leads, mail, uploads
from gateway.clients import ClientRegistry, RateLimits, presented_key
from gateway.config import ENV, ApiClient, GatewayConfig, key_hash, load_config
from gateway.idempotency import ExternalIds, IdempotencyStore, KeyReused, StoredResponse
from gateway.meta_graph import lead_notifications
from tests.gateway.conftest import fixture_bytes


def test_config_from_env_and_file(tmp_path):
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"api_clients": [{"client_id": "acme", "key_sha256": key_hash("k")}],
                                "google_ads_form_keys": {"1": "a"}, "meta_verify_token": "from-file"}))
    config = load_config({"LEADFLOW_GATEWAY_CONFIG": str(path), "LEADFLOW_PROJECT": "p1",
                          "LEADFLOW_META_VERIFY_TOKEN": "from-env", "LEADFLOW_GATEWAY_MAX_BODY_BYTES": "123"})
    assert config.input_topic == "projects/p1/topics/leads-in"
    assert config.dead_letter_topic == "projects/p1/topics/lead-dead-letters"
    assert config.meta_verify_token == "from-env" and config.max_body_bytes == 123
    assert config.api_clients == (ApiClient("acme", key_hash("k"), "10000/hour"),)
    assert config.google_ads_form_keys == {"1": "a"}
    assert load_config({}).input_topic == "projects/leadflow-local/topics/leads-in"
    with pytest.raises(ValueError, match="unknown gateway settings"):
        load_config({}, metaa_app_secret="x")
    # every variable names a real setting (one list, documented in docs/gateway.md)
    fields = set(GatewayConfig.__dataclass_fields__)
    assert all(setting in fields for setting, _ in ENV.values() if setting)


def test_docs_list_every_env_var():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    assert [name for name in ENV if f"`{name}`" not in text] == []


@pytest.mark.parametrize(("name", "kind"), [
    ("email_lead.eml", None), ("email_auto_reply.eml", "auto_reply"), ("email_bounce.eml", "auto_reply"),
    ("email_bounce_without_auto_submitted.eml", "bounce")])
def test_mail_classification(name, kind):
    assert mail.not_a_lead(fixture_bytes(name)) == kind


def test_mail_headers():
    assert mail.not_a_lead(b"From: a@example.com\nAuto-Submitted: no\nSubject: hi\n\nbody") is None
    assert mail.not_a_lead(b"From: a@example.com\nAuto-Submitted: auto-generated\n\nx") == "auto_generated"
    assert mail.not_a_lead(b"From: a@example.com\nX-Autoreply: yes\n\nx") == "auto_reply"
    assert mail.not_a_lead(b"From: a@example.com\nPrecedence: auto_reply\n\nx") == "auto_reply"
    assert mail.not_a_lead(b"Content-Type: multipart/report; report-type=disposition-notification\n\n"
                           ) == "read_receipt"
    assert mail.not_a_lead(b"\xff\xfe garbage") is None


def test_leads_body():
    ok, errors = leads.check_body(b'{"external_id": "1", "phone": "+14155550123"}')
    assert ok is not None and not ok.batch and errors == []
    bad, errors = leads.check_body(b"[1, {}]")
    assert bad is None and {(e.index, e.field) for e in errors} >= {(0, "(root)"), (1, "external_id")}
    _, errors = leads.check_body(b"{nope")
    assert errors[0].field == "(body)" and errors[0].message.startswith("invalid_json")
    assert leads.message_body({"a": "é"}) == '{"a":"é"}'.encode()


def test_uploads():
    data = fixture_bytes("upload.csv")
    assert uploads.upload_csv(data, "x.csv", "text/csv") == (data, "csv")
    with pytest.raises(uploads.UploadRejected):
        uploads.upload_csv(b"\xff\xfe\x00", "x.csv", "text/csv")
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["Phone", "When", "Score", None])
    book.active.append([4155550123, __import__("datetime").date(2026, 12, 3), 1.5, None])
    out = io.BytesIO()
    book.save(out)
    csv_bytes, kind = uploads.upload_csv(out.getvalue(), None, None)
    assert kind == "xlsx" and csv_bytes.decode() == "Phone,When,Score\n4155550123,2026-12-03T00:00:00,1.5\n"


def test_meta_notifications():
    notes = lead_notifications(json.loads(fixture_bytes("meta_leadgen_webhook.json")))
    assert [(n.leadgen_id, n.form_id, n.page_id) for n in notes] == [
        ("900000000000001", "555555555", "153125381133"), ("900000000000002", "555555555", "153125381133")]
    kept = json.loads(notes[1].envelope())
    assert kept["object"] == "page" and [c["value"]["leadgen_id"] for c in kept["entry"][0]["changes"]] == [
        "900000000000002"]
    assert lead_notifications({"entry": [{"changes": [{"field": "feed", "value": {"leadgen_id": "1"}}]}]}) == []
    assert lead_notifications([]) == [] and lead_notifications({"entry": "x"}) == []


def test_keys():
    registry = ClientRegistry([ApiClient("acme", key_hash("secret-key"), "2/minute")])
    assert registry.authenticate("secret-key").client_id == "acme"
    assert registry.authenticate("other") is None and registry.authenticate(None) is None
    assert presented_key({"Authorization": "Bearer abc"}) == "abc"
    assert presented_key({"x-api-key": "def"}) == "def"
    assert presented_key({"Authorization": "Basic abc"}) is None


@pytest.fixture(params=["memory", "redis"])
def state(request):
    """The stores of one gateway instance: in memory, or in a real Redis shared by all instances."""
    if request.param == "memory":
        return RateLimits(), IdempotencyStore(ttl=60, max_keys=10), ExternalIds(limit=3)
    import uuid

    from gateway import shared_state

    url = request.getfixturevalue("redis_url")
    # a fresh Redis client per test: redis-py's asyncio connections belong to the event loop that opened them
    namespace = uuid.uuid4().hex  # another client id space per test: the Redis is shared by the session
    return (RateLimits(url), shared_state.RedisIdempotency(shared_state.connect(url), ttl=60),
            shared_state.RedisExternalIds(shared_state.connect(url), ttl=60), namespace)


def _ns(state) -> str:
    return state[3] if len(state) > 3 else ""


def test_rate_limits(state):
    limits = state[0]
    client = ApiClient("acme" + _ns(state), key_hash("k"), "2/minute")

    async def run():
        assert await limits.hit(client) is None and await limits.hit(client) is None
        assert 1 <= await limits.hit(client) <= 60

    asyncio.run(run())


def test_idempotency_store(state):
    store, c = state[1], "c" + _ns(state)

    async def run():
        fp = store.fingerprint("POST", "/v1/leads", b"{}")
        assert await store.begin(c, "k", fp) is None
        waiter = asyncio.create_task(store.begin(c, "k", fp))  # in flight: waits for the first
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await store.finish(c, "k", StoredResponse(202, b"ok", (("content-type", "application/json"),)))
        first = await waiter
        assert (first.status, first.body, first.headers) == (202, b"ok", (("content-type", "application/json"),))
        with pytest.raises(KeyReused):
            await store.begin(c, "k", store.fingerprint("POST", "/v1/leads", b"[]"))
        assert await store.begin("other-client" + c, "k", fp) is None
        assert await store.begin(c, "k5", fp) is None
        await store.finish(c, "k5", StoredResponse(503, b"", ()))  # a 5xx is not kept
        assert await store.begin(c, "k5", fp) is None

    asyncio.run(run())


def test_external_ids_claims(state):
    ids, c = state[2], "c" + _ns(state)

    async def run():
        assert await ids.claim(c, "A") == (True, None)
        assert await ids.claim(c, "A") == (False, None)  # in flight
        await ids.settle(c, "A", "m1")
        assert await ids.claim(c, "A") == (False, "m1")
        assert await ids.claim("other" + c, "A") == (True, None)  # per client
        assert await ids.claim(c, "B") == (True, None)
        await ids.release(c, "B")  # not published: may be sent again
        assert await ids.claim(c, "B") == (True, None)
        await ids.release(c, "A")  # a settled id is not released
        assert await ids.claim(c, "A") == (False, "m1")

    asyncio.run(run())


def test_a_dead_instance_hands_its_idempotency_key_over(redis_url):
    from gateway import shared_state

    async def run():
        store = shared_state.RedisIdempotency(shared_state.connect(redis_url), ttl=60, lease=0.2)
        fp = store.fingerprint("POST", "/v1/leads", b"{}")
        assert await store.begin("dead-instance", "k", fp) is None  # and its instance never finishes
        assert await asyncio.wait_for(store.begin("dead-instance", "k", fp), timeout=5) is None  # taken over

    asyncio.run(run())


@pytest.mark.parametrize("payload", [
    {"external_id": "1", "phone": "+14155550123"}, {"external_id": "1", "email": "a@example.com"},
    {"external_id": " ", "phone": "+14155550123"}, {"external_id": "1", "phone": " "}, {"external_id": "1"},
    {"external_id": "1", "phone": None, "email": "a@example.com"}, {"external_id": "1", "phone": "", "email": "\t"}])
def test_the_documented_lead_schema_agrees_with_the_pipeline(payload):
    """The document's Lead schema (with the phone-or-email and non-blank rules written out) accepts exactly what
    the pipeline's api parser accepts."""
    from jsonschema import Draft202012Validator

    from transforms.parsers import api

    assert Draft202012Validator(leads.LEAD_SCHEMA).is_valid(payload) == (api.problems(payload) == [])


def test_wrk_output_is_read():
    from infra.local.gateway_loadtest import parse_wrk

    text = """Running 10s test @ http://127.0.0.1:1/v1/leads
  2 threads and 12 connections
  Latency Distribution
     50%  812.00us
     75%    7.50ms
     90%    8.38ms
     99%    1.20s
  16630 requests in 10.00s, 3.10MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   1663.12
"""
    assert parse_wrk(text) == {"non_2xx": 3, "p50_ms": 0.81, "p90_ms": 8.38, "p99_ms": 1200.0,
                               "requests_per_s": 1663}


def test_not_blank_in_the_document_is_the_pipelines_not_blank():
    """The document's pattern calls blank exactly what the pipeline's str.strip() strips, for every code point
    (regex engines disagree on \\S: schemathesis found U+0085 accepted by one and refused by the other)."""
    import re
    import sys

    pattern = re.compile(leads._NOT_BLANK["pattern"])
    assert [c for c in range(sys.maxunicode + 1) if (pattern.search(chr(c)) is None) != chr(c).isspace()] == []
