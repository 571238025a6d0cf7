"""Each provider's documented request verification, as pure functions (no HTTP): True only for a proven request.

Every comparison is constant-time (``hmac.compare_digest``), and a secret that is not configured verifies nothing:
an empty setting must never compare equal to an empty header.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping

META_SIGNATURE_PREFIX = "sha256="
MAX_FORM_FIELDS = 1000  # the pipeline's Twilio parser reads no more either
BODY_HASH_PARAM = "bodySHA256"  # Twilio's URL parameter for a JSON body's hash


def _same(given: str | bytes | None, expected: str | bytes | None) -> bool:
    if not given or not expected:
        return False
    a = given.encode("utf-8") if isinstance(given, str) else given
    b = expected.encode("utf-8") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def meta_signature(body: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256`` of a body: ``sha256=`` + hex HMAC-SHA256 of the raw body, keyed by the app secret."""
    return META_SIGNATURE_PREFIX + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def meta_signature_valid(body: bytes, header: str | None, app_secret: str | None) -> bool:
    if not header or not app_secret or not header.startswith(META_SIGNATURE_PREFIX):
        return False
    return _same(header.strip().lower(), meta_signature(body, app_secret))


def meta_handshake(params: Mapping[str, str], verify_token: str | None) -> str | None:
    """The ``hub.challenge`` to echo when the subscription request carries our verify token, else None."""
    if params.get("hub.mode") != "subscribe" or not _same(params.get("hub.verify_token"), verify_token):
        return None
    challenge = params.get("hub.challenge")
    return challenge if challenge else None


def google_key_valid(given: object, form_id: object, form_keys: Mapping[str, str], default_key: str | None) -> bool:
    """A Google Ads lead's ``google_key``: the key configured for its form id, else the default key."""
    if not isinstance(given, str):
        return False
    expected = form_keys.get(str(form_id)) if form_id is not None else None
    return _same(given, expected or default_key)


class FormParams:
    """POST parameters in order with repeats, as the twilio validator reads them (``getlist``)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = pairs

    def __iter__(self):
        return iter(dict.fromkeys(name for name, _ in self.pairs))

    def __len__(self) -> int:
        return len(self.pairs)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def form_params(body: bytes) -> FormParams:
    """An ``application/x-www-form-urlencoded`` body's parameters (blank values kept: Twilio signs them too)."""
    text = body.decode("utf-8", "replace")
    return FormParams(urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))


def twilio_signature_valid(url: str, params: FormParams | str, header: str | None, auth_token: str | None,
                           settings: str | None = None, shared_key: str | None = None) -> bool:
    """``X-Twilio-Signature`` over the public URL and the POST parameters, by the official ``twilio`` validator:
    HMAC-SHA1 keyed by the auth token, of the URL followed by every parameter name and value sorted by name; or,
    when Twilio sends ``X-Twilio-Webhooks-Signature-Settings`` (a webhook rule with a shared key), the same string
    keyed by that shared key with the algorithm the header names (HMAC-SHA256). ``params`` is the raw body text for a
    JSON body, whose SHA-256 the URL's ``bodySHA256`` must carry (the URL alone is signed then)."""
    from twilio.request_validator import RequestValidator, get_signature_algorithm

    secret = shared_key if settings else auth_token
    if not header or not secret:
        return False
    if isinstance(params, str) and BODY_HASH_PARAM not in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query):
        return False  # a text body is proven only by its hash in the signed URL
    return bool(RequestValidator(secret).validate(url, params, header, get_signature_algorithm(settings)))


def shared_secret_valid(given: str | None, secret: str | None) -> bool:
    return _same(given, secret)
