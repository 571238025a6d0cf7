"""The gateway's settings: one small frozen object, read from the environment and an optional JSON file.

Every environment variable the gateway reads is named in ``ENV`` below, with what it means; docs/gateway.md shows
the same table. Secrets (app secret, tokens, API key hashes) come from the environment or the config file, never
from the repository. The config file (``LEADFLOW_GATEWAY_CONFIG``) holds what does not fit one variable: API
clients with their key hashes and rate limits, Google Ads keys per form id. An environment variable wins over the
same setting in the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.resources import LOCAL_PROJECT, Resources

META_GRAPH_URL = "https://graph.facebook.com/v21.0"
KNOWLARITY_CALLLOG_URL = "https://kpi.knowlarity.com/Basic/v1/account/calllog"
DEFAULT_RATE_LIMIT = "10000/hour"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # a provider webhook or an API batch of 500 leads fits well within 1 MiB
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_PUBLISH_TIMEOUT = 10.0
# The variables that carry secrets: on Cloud Run each comes from Secret Manager (infra/deploy/terraform/gateway.tf)
SECRET_ENV = ("LEADFLOW_META_APP_SECRET", "LEADFLOW_META_VERIFY_TOKEN", "LEADFLOW_META_PAGE_ACCESS_TOKEN",
              "LEADFLOW_GOOGLE_ADS_KEY", "LEADFLOW_TWILIO_AUTH_TOKEN", "LEADFLOW_TWILIO_SHARED_KEY",
              "LEADFLOW_KNOWLARITY_SECRET", "LEADFLOW_KNOWLARITY_API_KEY", "LEADFLOW_KNOWLARITY_SR_KEY",
              "LEADFLOW_EMAIL_WEBHOOK_SECRET")

# env var -> (setting, what it is). The one list of the gateway's environment.
ENV: dict[str, tuple[str, str]] = {
    "LEADFLOW_GATEWAY_CONFIG": ("", "path of a JSON file with any of the settings below (by setting name)"),
    "LEADFLOW_PROJECT": ("project", f"GCP project of the topics (default {LOCAL_PROJECT})"),
    "LEADFLOW_INPUT_TOPIC": ("input_topic", "topic the leads go to (default projects/<project>/topics/leads-in)"),
    "LEADFLOW_DEAD_LETTER_TOPIC": ("dead_letter_topic",
                                   "topic for what the gateway cannot complete, e.g. a Meta lead it could not fetch "
                                   "(default projects/<project>/topics/lead-dead-letters)"),
    "LEADFLOW_PUBLIC_URL": ("public_url", "the gateway's public base URL as providers call it (Twilio signs it)"),
    "LEADFLOW_META_APP_SECRET": ("meta_app_secret", "Meta app secret: X-Hub-Signature-256 key"),
    "LEADFLOW_META_VERIFY_TOKEN": ("meta_verify_token", "Meta webhook verify token (subscription handshake)"),
    "LEADFLOW_META_PAGE_ACCESS_TOKEN": ("meta_page_access_token", "Page access token for the Graph API lead read"),
    "LEADFLOW_META_GRAPH_URL": ("meta_graph_url", f"Graph API base URL (default {META_GRAPH_URL})"),
    "LEADFLOW_GOOGLE_ADS_KEY": ("google_ads_key", "default google_key of Google Ads lead forms (the pipeline's too)"),
    "LEADFLOW_TWILIO_AUTH_TOKEN": ("twilio_auth_token", "Twilio auth token: X-Twilio-Signature key"),
    "LEADFLOW_TWILIO_SHARED_KEY": ("twilio_shared_key",
                                   "Twilio webhook-rule shared key (with X-Twilio-Webhooks-Signature-Settings)"),
    "LEADFLOW_TWILIO_SMS_REPLY": ("twilio_sms_reply", "text of the TwiML auto-reply to an SMS (default: none)"),
    "LEADFLOW_TWILIO_VOICE_SAY": ("twilio_voice_say", "text the TwiML answer says to a caller (default: none)"),
    "LEADFLOW_KNOWLARITY_SECRET": ("knowlarity_secret", "shared secret of the Knowlarity webhook"),
    "LEADFLOW_KNOWLARITY_API_URL": ("knowlarity_api_url",
                                    f"Knowlarity call-log API for knowlarity-sync (default {KNOWLARITY_CALLLOG_URL})"),
    "LEADFLOW_KNOWLARITY_API_KEY": ("knowlarity_api_key", "Knowlarity application key (x-api-key header)"),
    "LEADFLOW_KNOWLARITY_SR_KEY": ("knowlarity_sr_key", "Knowlarity SR API key (Authorization header)"),
    "LEADFLOW_EMAIL_WEBHOOK_SECRET": ("email_webhook_secret", "shared secret of POST /webhooks/email"),
    "LEADFLOW_GATEWAY_MAX_BODY_BYTES": ("max_body_bytes", f"largest request body (default {DEFAULT_MAX_BODY_BYTES})"),
    "LEADFLOW_GATEWAY_MAX_UPLOAD_BYTES": ("max_upload_bytes",
                                          f"largest upload to /v1/uploads (default {DEFAULT_MAX_UPLOAD_BYTES})"),
    "LEADFLOW_GATEWAY_PUBLISH_TIMEOUT": ("publish_timeout",
                                         f"seconds a publish may take before 503 (default {DEFAULT_PUBLISH_TIMEOUT})"),
    "LEADFLOW_GATEWAY_RATE_LIMIT": ("default_rate_limit", f"API clients' default limit (default {DEFAULT_RATE_LIMIT})"),
    "LEADFLOW_GATEWAY_STATE_URL": ("state_url", "redis:// URL of the state all instances share: rate limits, "
                                   "idempotency keys, external ids (default: each instance's memory)"),
    "LEADFLOW_STATUS_DATASET": ("status_dataset",
                                "PROJECT:DATASET of the pipeline's tables for GET /v1/leads/status (default: not "
                                "served, 501)"),
}
_NUMBERS = {"max_body_bytes": int, "max_upload_bytes": int, "publish_timeout": float, "external_id_ttl": float}


def key_hash(api_key: str) -> str:
    """How an API key is stored: its SHA-256, hex (a key is random, so no salt or slow hash is needed)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiClient:
    """One caller of /v1/*: its id (the ``client_id`` attribute), key hash and rate limit (``limits`` notation)."""

    client_id: str
    key_sha256: str
    rate_limit: str = DEFAULT_RATE_LIMIT


@dataclass(frozen=True)
class GatewayConfig:
    project: str = LOCAL_PROJECT
    input_topic: str = ""
    dead_letter_topic: str = ""
    public_url: str = "http://127.0.0.1:8080"
    meta_app_secret: str | None = None
    meta_verify_token: str | None = None
    meta_page_access_token: str | None = None
    meta_graph_url: str = META_GRAPH_URL
    meta_fetch_attempts: int = 4
    meta_fetch_backoff: float = 0.2  # seconds before the 2nd attempt, doubled after each
    google_ads_key: str | None = None
    google_ads_form_keys: Mapping[str, str] = field(default_factory=dict)  # form_id -> google_key
    twilio_auth_token: str | None = None
    twilio_shared_key: str | None = None
    twilio_sms_reply: str | None = None
    twilio_voice_say: str | None = None
    knowlarity_secret: str | None = None
    knowlarity_api_url: str = KNOWLARITY_CALLLOG_URL
    knowlarity_api_key: str | None = None
    knowlarity_sr_key: str | None = None
    email_webhook_secret: str | None = None
    status_dataset: str | None = None
    api_clients: tuple[ApiClient, ...] = ()
    default_rate_limit: str = DEFAULT_RATE_LIMIT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT
    idempotency_ttl: float = 24 * 3600.0
    idempotency_max_keys: int = 100_000
    state_url: str | None = None  # redis://HOST:PORT/DB shared by every instance (gateway.shared_state)
    external_id_ttl: float = 90 * 24 * 3600.0  # how long a client's external id answers 409 (shared state)

    def __post_init__(self):
        resources = Resources(self.project)
        if not self.input_topic:
            object.__setattr__(self, "input_topic", resources.topic("input"))
        if not self.dead_letter_topic:
            object.__setattr__(self, "dead_letter_topic", resources.topic("dead_letters"))
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    def public(self, path: str) -> str:
        """The URL a provider calls for ``path`` (what Twilio signs)."""
        return self.public_url + path


def _clients(items: Any, default_limit: str) -> tuple[ApiClient, ...]:
    out = []
    for item in items or ():
        out.append(ApiClient(str(item["client_id"]), str(item["key_sha256"]).lower(),
                             str(item.get("rate_limit") or default_limit)))
    return tuple(out)


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> GatewayConfig:
    """Settings from the config file named by ``LEADFLOW_GATEWAY_CONFIG``, then the environment, then overrides.

    The file is a JSON object of setting names; ``api_clients`` is a list of ``{"client_id", "key_sha256",
    "rate_limit"}`` and ``google_ads_form_keys`` an object ``{form_id: google_key}``.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = env.get("LEADFLOW_GATEWAY_CONFIG")
    if path:
        values.update(json.loads(Path(path).read_text(encoding="utf-8")))
    for name, (setting, _) in ENV.items():
        if setting and env.get(name):
            values[setting] = env[name]
    values.update(overrides)
    for setting, kind in _NUMBERS.items():
        if setting in values:
            values[setting] = kind(values[setting])
    default_limit = str(values.get("default_rate_limit") or DEFAULT_RATE_LIMIT)
    if "api_clients" in values and not isinstance(values["api_clients"], tuple):
        values["api_clients"] = _clients(values["api_clients"], default_limit)
    if "google_ads_form_keys" in values:
        values["google_ads_form_keys"] = {str(k): str(v) for k, v in dict(values["google_ads_form_keys"]).items()}
    known = {f for f in GatewayConfig.__dataclass_fields__}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError("unknown gateway settings: " + ", ".join(unknown))
    return GatewayConfig(**values)
