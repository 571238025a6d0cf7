"""The CRM endpoints deliveries are pushed to: one Pub/Sub push subscription per endpoint on the deliveries topic.

The reference file is ``schemas/crm_endpoints.toml`` (its header explains each field). This module is its one
reader, below both the local stack (``leadflow local up`` creates the subscriptions in the emulator, pushing to
``local_url``) and the deployment (``infra.deploy.terraform_gen`` writes them for Terraform, pushing to ``url``),
so a local run and production filter, retry and dead-letter the same way. Bad entries raise :class:`ConfigError`
naming the endpoint and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from schemas.resources import Resources

CONFIG_PATH = Path(__file__).with_name("crm_endpoints.toml")
SUBSCRIPTION_PREFIX = "crm-push-"
PUSH_SERVICE_ACCOUNT_ID = "leadflow-crm-push"  # the OIDC token's email claim: leadflow-crm-push@PROJECT.iam...
DEAD_LETTER_TOPIC_KEY = "crm_dead_letters"  # schemas.resources.TOPICS key of the CRM dead-letter topic
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,38}[a-z0-9]")
_FIELDS = {"name", "url", "local_url", "filter", "audience", "min_backoff_seconds", "max_backoff_seconds",
           "max_delivery_attempts", "wrapped"}


class ConfigError(ValueError):
    """An entry of the CRM endpoint file Pub/Sub would refuse."""


@dataclass(frozen=True)
class CrmEndpoint:
    name: str
    url: str
    local_url: str = ""
    filter: str = ""
    audience: str = ""
    min_backoff_seconds: float = 10
    max_backoff_seconds: float = 600
    max_delivery_attempts: int = 5
    wrapped: bool = True

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"CRM endpoint {self.name!r}: {field} {why}")

        if not _NAME.fullmatch(self.name):
            raise bad("name", "must be 3-40 lower-case letters, digits or '-'")
        if urlsplit(self.url).scheme != "https" or not urlsplit(self.url).hostname:
            raise bad("url", f"must be an https URL (Pub/Sub pushes only to https), not {self.url!r}")
        if self.local_url and (urlsplit(self.local_url).scheme not in ("http", "https")
                               or not urlsplit(self.local_url).hostname):
            raise bad("local_url", f"must be an http(s) URL, not {self.local_url!r}")
        if len(self.filter.encode()) > 256:
            raise bad("filter", "is longer than Pub/Sub's 256 bytes")
        for field in ("min_backoff_seconds", "max_backoff_seconds"):
            if not 0 <= getattr(self, field) <= 600:
                raise bad(field, "must be within 0..600")
        if self.min_backoff_seconds > self.max_backoff_seconds:
            raise bad("min_backoff_seconds", "must not exceed max_backoff_seconds")
        if not 5 <= self.max_delivery_attempts <= 100:
            raise bad("max_delivery_attempts", "must be within 5..100 (Pub/Sub's limits)")

    @property
    def subscription(self) -> str:
        return SUBSCRIPTION_PREFIX + self.name

    def push_subscription(self, resources: Resources, *, local: bool) -> dict:
        """The CreateSubscription request (google-cloud-pubsub dict form) for this endpoint in ``resources``."""
        endpoint = self.local_url if local else self.url
        push_config: dict = {"push_endpoint": endpoint, "oidc_token": {
            "service_account_email": push_service_account(resources.project), "audience": self.audience}}
        if not self.wrapped:
            push_config["no_wrapper"] = {"write_metadata": True}
        return {
            "name": resources.subscription(self.subscription),
            "topic": resources.topic("deliveries"),
            "filter": self.filter,
            "push_config": push_config,
            "ack_deadline_seconds": 60,
            "enable_message_ordering": True,  # deliveries carry the lead id as ordering key
            "retry_policy": {"minimum_backoff": _duration(self.min_backoff_seconds),
                             "maximum_backoff": _duration(self.max_backoff_seconds)},
            "dead_letter_policy": {"dead_letter_topic": resources.topic(DEAD_LETTER_TOPIC_KEY),
                                   "max_delivery_attempts": self.max_delivery_attempts},
        }


def _duration(seconds: float) -> dict:
    whole = int(seconds)
    return {"seconds": whole, "nanos": round((seconds - whole) * 1e9)}


def push_service_account(project: str) -> str:
    return f"{PUSH_SERVICE_ACCOUNT_ID}@{project}.iam.gserviceaccount.com"


def parse(text: str) -> list[CrmEndpoint]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CRM endpoint file is not valid TOML: {exc}") from None
    endpoints = []
    for entry in raw.get("endpoint", []):
        unknown = set(entry) - _FIELDS
        if unknown or "name" not in entry or "url" not in entry:
            raise ConfigError(f"CRM endpoint {entry.get('name')!r}: needs name and url; unknown fields "
                              f"{sorted(unknown)}")
        endpoints.append(CrmEndpoint(**entry))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ConfigError(f"CRM endpoint names must be unique: {names}")
    return endpoints


def load(path: Path = CONFIG_PATH) -> list[CrmEndpoint]:
    """The configured endpoints (the reference file by default)."""
    return parse(path.read_text())
