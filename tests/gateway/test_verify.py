"""The verification functions alone (no HTTP): documented algorithms, constant-time, nothing verified unconfigured."""

from __future__ import annotations

import hashlib
import hmac

from twilio.request_validator import RequestValidator

from gateway import verify
from tests.gateway.conftest import fixture_bytes


def test_meta_signature_is_hmac_sha256_of_the_raw_body():
    body, secret = b'{"object":"page"}', "app-secret-for-test"
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert verify.meta_signature(body, secret) == expected
    assert verify.meta_signature_valid(body, expected, secret)
    assert verify.meta_signature_valid(body, expected.upper().replace("SHA256=", "sha256="), secret)
    assert not verify.meta_signature_valid(body + b"\n", expected, secret)
    assert not verify.meta_signature_valid(body, expected, "other")
    assert not verify.meta_signature_valid(body, expected[len("sha256="):], secret)  # the prefix is required
    assert not verify.meta_signature_valid(body, None, secret)
    assert not verify.meta_signature_valid(body, "sha256=", None)


def test_meta_handshake():
    params = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "meatyhamhock"}
    assert verify.meta_handshake(params, "meatyhamhock") == "1158201444"
    assert verify.meta_handshake({**params, "hub.mode": "unsubscribe"}, "meatyhamhock") is None
    assert verify.meta_handshake({**params, "hub.verify_token": "x"}, "meatyhamhock") is None
    assert verify.meta_handshake({**params, "hub.verify_token": ""}, "") is None  # unconfigured verifies nothing
    assert verify.meta_handshake({**params, "hub.verify_token": ""}, None) is None


def test_google_key_per_form_then_default():
    keys = {"123": "form-key"}
    assert verify.google_key_valid("form-key", 123, keys, "default-key")
    assert not verify.google_key_valid("default-key", 123, keys, "default-key")
    assert verify.google_key_valid("default-key", 999, keys, "default-key")
    assert verify.google_key_valid("default-key", None, keys, "default-key")
    assert not verify.google_key_valid("", 999, keys, None)
    assert not verify.google_key_valid(None, 999, keys, "default-key")
    assert not verify.google_key_valid(123, 999, keys, "123")


def test_twilio_signature_with_the_official_validator():
    token, url = "twilio-token-for-test", "https://gw.example/webhooks/twilio/sms"
    body = fixture_bytes("twilio_sms.form")
    params = verify.form_params(body)
    signature = RequestValidator(token).compute_signature(url, dict(params.pairs))
    assert verify.twilio_signature_valid(url, params, signature, token)
    assert not verify.twilio_signature_valid(url + "?x=1", params, signature, token)
    assert not verify.twilio_signature_valid(url, params, signature, "other")
    assert not verify.twilio_signature_valid(url, params, "", token)
    assert not verify.twilio_signature_valid(url, params, signature, None)
    # repeated parameters are all signed (twilio's validator reads getlist)
    repeated = verify.form_params(b"A=1&A=2&B=")
    assert repeated.getlist("A") == ["1", "2"] and repeated.getlist("B") == [""]
    assert verify.twilio_signature_valid(url, repeated, RequestValidator(token).compute_signature(url, repeated), token)


def test_shared_secret():
    assert verify.shared_secret_valid("s3", "s3")
    assert not verify.shared_secret_valid("s3", "s4")
    assert not verify.shared_secret_valid("", "")
    assert not verify.shared_secret_valid(None, None)


def test_twilio_shared_key_signature_settings():
    token, shared, url = "auth-token-for-test", "shared-key-for-test", "https://gw.example/webhooks/twilio/sms"
    params = verify.form_params(fixture_bytes("twilio_sms.form"))
    settings = "key=webhooks_sharedkey_test,algorithm=HMAC_SHA256"
    signature = RequestValidator(shared).compute_signature(url, dict(params.pairs), algorithm="HMAC_SHA256")
    assert verify.twilio_signature_valid(url, params, signature, token, settings, shared)
    assert not verify.twilio_signature_valid(url, params, signature, token, settings, None)  # no shared key set
    assert not verify.twilio_signature_valid(url, params, signature, token)  # without the header: the auth token
    sha1_by_shared = RequestValidator(shared).compute_signature(url, dict(params.pairs))
    assert not verify.twilio_signature_valid(url, params, sha1_by_shared, token, settings, shared)
    assert not verify.twilio_signature_valid(url, params, signature, token, "key=k,algorithm=HMAC_MD5", shared)
