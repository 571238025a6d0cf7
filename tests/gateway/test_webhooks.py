"""Each provider endpoint against the real Pub/Sub emulator: its documented verification with good and bad
signatures computed here from the documented algorithms, what is published (body byte for byte, attributes), and
nothing published for a request that fails verification."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse

import pytest
from twilio.request_validator import RequestValidator

from tests.gateway.conftest import fixture_bytes

pytestmark = pytest.mark.e2e

LEAD_1, LEAD_2 = "900000000000001", "900000000000002"


def meta_sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def assert_attributes(message, provider: str) -> None:
    attrs = dict(message.attributes)
    assert attrs["provider"] == provider
    assert attrs["received_at"].endswith("Z") and "T" in attrs["received_at"]
    assert len(attrs["gateway_request_id"]) == 36


# --- Meta ---------------------------------------------------------------------------------------------------------

def test_meta_handshake_echoes_the_challenge_only_for_our_token(client, test_secrets):
    ok = client.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                              "hub.verify_token": test_secrets.meta_verify_token})
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = client.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                               "hub.verify_token": "not-the-token"})
    assert bad.status_code == 403 and "1158201444" not in bad.text
    assert client.get("/webhooks/meta", params={"hub.challenge": "1"}).status_code == 403


def test_meta_webhook_fetches_each_lead_and_publishes_the_graph_object(client, bus, graph, test_secrets):
    lead_1 = fixture_bytes("meta_graph_lead.json")
    lead_2 = lead_1.replace(LEAD_1.encode(), LEAD_2.encode())
    graph.leads.update({LEAD_1: lead_1, LEAD_2: lead_2})
    graph.failures[LEAD_2] = [(500, b'{"error":{"message":"An unknown error has occurred.","type":"OAuthException",'
                                    b'"code":1,"fbtrace_id":"x"}}'),
                              (400, fixture_bytes("meta_graph_error_throttled.json"))]  # transient: retried
    body = fixture_bytes("meta_leadgen_webhook.json")
    r = client.post("/webhooks/meta", content=body,
                    headers={"X-Hub-Signature-256": meta_sign(body, test_secrets.meta_app_secret),
                             "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["published"] == 2 and r.json()["kept_for_retry"] == 0
    messages = bus.pull("input", 2)
    assert sorted(m.data for m in messages) == sorted([lead_1, lead_2])  # byte for byte as Graph answered
    for m in messages:
        assert_attributes(m, "meta_lead_ads")
        assert m.attributes["form_id"] == "555555555"
    assert graph.requests.count(LEAD_2) == 3


def test_meta_lead_that_cannot_be_read_is_kept_on_the_dead_letter_topic(client, bus, graph, test_secrets):
    graph.leads[LEAD_1] = fixture_bytes("meta_graph_lead.json")  # LEAD_2 is unknown: Graph code 100, no retry
    body = fixture_bytes("meta_leadgen_webhook.json")
    r = client.post("/webhooks/meta", content=body,
                    headers={"X-Hub-Signature-256": meta_sign(body, test_secrets.meta_app_secret)})
    assert r.status_code == 200 and r.json() == {"request_id": r.json()["request_id"], "published": 1,
                                                 "kept_for_retry": 1}
    assert len(bus.pull("input", 1)) == 1
    (kept,) = bus.pull("dead_letters", 1)
    assert kept.attributes["error_type"] == "meta_fetch_failed" and kept.attributes["leadgen_id"] == LEAD_2
    assert kept.attributes["reason"].startswith("graph_http_400:GraphMethodException:code_100")
    dead = json.loads(kept.data)
    assert dead["stage"] == "gateway" and dead["provider"] == "meta_lead_ads"
    notification = json.loads(dead["payload"])  # the notification of that one lead, in the webhook's shape
    assert [c["value"]["leadgen_id"] for e in notification["entry"] for c in e["changes"]] == [LEAD_2]
    assert graph.requests.count(LEAD_2) == 1


def test_meta_bad_or_missing_signature_publishes_nothing(client, bus, graph, test_secrets):
    body = fixture_bytes("meta_leadgen_webhook.json")
    for headers in ({}, {"X-Hub-Signature-256": meta_sign(body, "wrong-secret")},
                    {"X-Hub-Signature-256": meta_sign(body + b" ", test_secrets.meta_app_secret)},
                    {"X-Hub-Signature-256": "sha1=" + hashlib.sha1(body).hexdigest()}):
        assert client.post("/webhooks/meta", content=body, headers=headers).status_code == 403
    assert graph.requests == [] and bus.pull("input", 0, timeout=0.5) == []
    assert 'endpoint="meta",outcome="rejected_signature"} 4' in client.get("/metrics").text


def test_meta_signed_odd_body_is_published_anyway(client, bus, test_secrets):
    body = b'{"object": "page", "entry": "not a list"'
    r = client.post("/webhooks/meta", content=body,
                    headers={"X-Hub-Signature-256": meta_sign(body, test_secrets.meta_app_secret)})
    assert r.status_code == 200
    (m,) = bus.pull("input", 1)
    assert m.data == body and m.attributes["provider"] == "meta_lead_ads"


# --- Google Ads ---------------------------------------------------------------------------------------------------

def google_body(key: str, form_id: int = 40000000000) -> bytes:
    text = fixture_bytes("google_ads_lead.json").decode().replace("{{GOOGLE_KEY}}", key)
    return text.replace('"form_id":40000000000', f'"form_id":{form_id}').encode()


def test_google_ads_key_default_and_per_form(client, bus, test_secrets):
    default = google_body(test_secrets.google_ads_key)
    assert client.post("/webhooks/google-ads", content=default).status_code == 200
    per_form = google_body(test_secrets.google_form_key, form_id=40000000001)
    assert client.post("/webhooks/google-ads", content=per_form).status_code == 200
    messages = bus.pull("input", 2)
    assert sorted(m.data for m in messages) == sorted([default, per_form])
    for m in messages:
        assert_attributes(m, "google_ads_lead_form")


def test_google_ads_wrong_key_publishes_nothing(client, bus, test_secrets):
    # the form with its own key does not take the default one
    assert client.post("/webhooks/google-ads",
                       content=google_body(test_secrets.google_ads_key, form_id=40000000001)).status_code == 403
    assert client.post("/webhooks/google-ads", content=google_body("guess")).status_code == 403
    assert client.post("/webhooks/google-ads", content=b"not json").status_code == 400
    assert bus.pull("input", 0, timeout=0.5) == []


# --- Twilio -------------------------------------------------------------------------------------------------------

def twilio_post(client, path: str, body: bytes, token: str | None):
    params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature("http://testserver" + path, params)
    return client.post(path, content=body, headers=headers)


def test_twilio_sms_and_voice_answer_twiml_and_publish(client, bus, test_secrets):
    sms, voice = fixture_bytes("twilio_sms.form"), fixture_bytes("twilio_voice.form")
    r = twilio_post(client, "/webhooks/twilio/sms", sms, test_secrets.twilio_auth_token)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert r.text.endswith("<Response />")
    r = twilio_post(client, "/webhooks/twilio/voice", voice, test_secrets.twilio_auth_token)
    assert r.status_code == 200 and "<Response" in r.text
    by_provider = {m.attributes["provider"]: m for m in bus.pull("input", 2)}
    assert by_provider["twilio_sms"].data == sms and by_provider["twilio_voice"].data == voice


def test_twilio_configured_replies(make_config, bus, test_secrets):
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    app = create_app(make_config(twilio_sms_reply="Thanks & see you <soon>", twilio_voice_say="Thank you"))
    with TestClient(app) as c:
        r = twilio_post(c, "/webhooks/twilio/sms", fixture_bytes("twilio_sms.form"), test_secrets.twilio_auth_token)
        assert "<Message>Thanks &amp; see you &lt;soon&gt;</Message>" in r.text
        r = twilio_post(c, "/webhooks/twilio/voice", fixture_bytes("twilio_voice.form"),
                        test_secrets.twilio_auth_token)
        assert "<Say>Thank you</Say>" in r.text


def test_twilio_bad_signature_publishes_nothing(client, bus, test_secrets):
    sms = fixture_bytes("twilio_sms.form")
    assert twilio_post(client, "/webhooks/twilio/sms", sms, None).status_code == 403
    assert twilio_post(client, "/webhooks/twilio/sms", sms, "another-token").status_code == 403
    # signed for another URL (the voice endpoint) is not valid for this one
    params = dict(urllib.parse.parse_qsl(sms.decode(), keep_blank_values=True))
    other = RequestValidator(test_secrets.twilio_auth_token).compute_signature(
        "http://testserver/webhooks/twilio/voice", params)
    assert client.post("/webhooks/twilio/sms", content=sms, headers={"X-Twilio-Signature": other}).status_code == 403
    # a tampered body
    assert twilio_post(client, "/webhooks/twilio/sms", sms, test_secrets.twilio_auth_token).status_code == 200
    bus.pull("input", 1)
    tampered = sms.replace(b"Body=Hi", b"Body=Yo")
    sig = RequestValidator(test_secrets.twilio_auth_token).compute_signature(
        "http://testserver/webhooks/twilio/sms", params)
    assert client.post("/webhooks/twilio/sms", content=tampered,
                       headers={"X-Twilio-Signature": sig}).status_code == 403
    assert bus.pull("input", 0, timeout=0.5) == []


def test_twilio_json_body_signed_through_its_hash(client, bus, test_secrets):
    """Twilio's JSON-body webhooks: the URL carries ``bodySHA256`` (hex SHA-256 of the raw body) and the signature is
    base64 HMAC-SHA1 of the URL alone, keyed by the auth token (computed here from the documented algorithm)."""
    import base64

    body = b'{"MessageSid":"SM0123456789abcdef0123456789abcdef","From":"+14155550123","Body":"Call me"}'

    def signed(path: str, payload: bytes, token: str = test_secrets.twilio_auth_token) -> tuple[str, str]:
        url = f"{path}?bodySHA256={hashlib.sha256(payload).hexdigest()}"
        mac = hmac.new(token.encode(), ("http://testserver" + url).encode(), hashlib.sha1).digest()
        return url, base64.b64encode(mac).decode()

    url, sig = signed("/webhooks/twilio/sms", body)
    json_type = {"Content-Type": "application/json"}
    r = client.post(url, content=body, headers={**json_type, "X-Twilio-Signature": sig})
    assert r.status_code == 200, r.text
    (message,) = bus.pull("input", 1)
    assert message.data == body and message.attributes["provider"] == "twilio_sms"
    # the body changed after signing, the hash of another body, the hash left out, another token: refused
    assert client.post(url, content=body.replace(b"Call", b"Mail"), headers={
        **json_type, "X-Twilio-Signature": sig}).status_code == 403
    other_url, other_sig = signed("/webhooks/twilio/sms", b"{}")
    assert client.post(other_url, content=body, headers={
        **json_type, "X-Twilio-Signature": other_sig}).status_code == 403
    assert client.post("/webhooks/twilio/sms", content=body, headers={
        **json_type, "X-Twilio-Signature": sig}).status_code == 403
    _, wrong = signed("/webhooks/twilio/sms", body, token="another-token")
    assert client.post(url, content=body, headers={**json_type, "X-Twilio-Signature": wrong}).status_code == 403
    assert bus.pull("input", 0, timeout=0.5) == []


def test_twilio_status_callback_is_recorded_never_published(client, bus, test_secrets):
    status = fixture_bytes("twilio_message_status.form")
    r = twilio_post(client, "/webhooks/twilio/status", status, test_secrets.twilio_auth_token)
    assert r.status_code == 204
    assert twilio_post(client, "/webhooks/twilio/status", status, "wrong").status_code == 403
    assert bus.pull("input", 0, timeout=0.5) == []
    assert 'endpoint="twilio_status",outcome="delivered"} 1' in client.get("/metrics").text


# --- Knowlarity ---------------------------------------------------------------------------------------------------

def test_knowlarity_shared_secret_header_or_query(client, bus, test_secrets):
    body = fixture_bytes("knowlarity_call.json")
    assert client.post("/webhooks/knowlarity", content=body,
                       headers={"X-Leadflow-Secret": test_secrets.knowlarity_secret}).status_code == 200
    assert client.post("/webhooks/knowlarity", content=body,
                       params={"secret": test_secrets.knowlarity_secret}).status_code == 200
    for bad in ({"headers": {"X-Leadflow-Secret": "nope"}}, {"params": {"secret": ""}}, {}):
        assert client.post("/webhooks/knowlarity", content=body, **bad).status_code == 401
    messages = bus.pull("input", 2)
    assert [m.data for m in messages] == [body, body]
    assert_attributes(messages[0], "knowlarity_call")


# --- E-mail -------------------------------------------------------------------------------------------------------

def test_email_lead_published_auto_replies_and_bounces_recorded(client, bus, test_secrets):
    headers = {"X-Leadflow-Secret": test_secrets.email_secret, "Content-Type": "message/rfc822"}
    lead = fixture_bytes("email_lead.eml")
    assert client.post("/webhooks/email", content=lead, headers=headers).json()["published"] == 1
    for name, kind in (("email_auto_reply.eml", "auto_reply"), ("email_bounce.eml", "auto_reply"),
                       ("email_bounce_without_auto_submitted.eml", "bounce")):
        r = client.post("/webhooks/email", content=fixture_bytes(name), headers=headers)
        assert r.status_code == 200 and r.json()["recorded"] == kind, name
    (m,) = bus.pull("input", 1)
    assert m.data == lead and m.attributes["provider"] == "inbound_email"
    assert client.post("/webhooks/email", content=lead, headers={"X-Leadflow-Secret": "x"}).status_code == 401


def test_email_inbound_parse_form_field(client, bus, test_secrets):
    lead = fixture_bytes("email_lead.eml")
    r = client.post("/webhooks/email", params={"secret": test_secrets.email_secret},
                    files={"email": ("message.eml", lead, "message/rfc822")}, data={"to": "inbox@leadflow.example"})
    assert r.status_code == 200 and r.json()["published"] == 1
    (m,) = bus.pull("input", 1)
    assert m.data == lead and m.attributes["to"] == "inbox@leadflow.example"


def test_twilio_webhook_rule_shared_key(make_config, bus):
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    shared = "shared-" + bus.project
    sms = fixture_bytes("twilio_sms.form")
    params = dict(urllib.parse.parse_qsl(sms.decode(), keep_blank_values=True))
    url = "http://testserver/webhooks/twilio/sms"
    settings = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_x,algorithm=HMAC_SHA256"}
    with TestClient(create_app(make_config(twilio_shared_key=shared))) as c:
        good = RequestValidator(shared).compute_signature(url, params, algorithm="HMAC_SHA256")
        assert c.post(url, content=sms, headers={"X-Twilio-Signature": good, **settings}).status_code == 200
        sha1 = RequestValidator(shared).compute_signature(url, params)
        assert c.post(url, content=sms, headers={"X-Twilio-Signature": sha1, **settings}).status_code == 403
    assert len(bus.pull("input", 1)) == 1
