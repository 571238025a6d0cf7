"""Parser for Google Ads lead form extensions (the lead form webhook).

Google POSTs one JSON object per lead::

    {"lead_id": "...", "api_version": "1.0", "form_id": 123, "campaign_id": 456, "adgroup_id": 789,
     "creative_id": 1011, "gcl_id": "...", "google_key": "<shared secret>", "is_test": true,
     "user_column_data": [{"column_id": "FULL_NAME", "string_value": "...", "column_name": "Full Name"}, ...]}

``google_key`` is the secret configured on the form; when ``ParseConfig.google_ads_key`` is set
the two must match. ``lead_submit_time`` (ISO 8601, newer payloads) is the event time; without it
``event_time`` stays None (the publish time is used). ``asset_group_id`` (Performance Max) and
``lead_stage`` go to ``extra``. Column ids Leadflow has no field for go to ``extra`` under their
column name (or id when the name is missing); as for Meta, custom questions whose id mentions a
message, comment or question also become ``message``. WORK_EMAIL / WORK_PHONE stand in for a
missing EMAIL / PHONE_NUMBER.

Older payloads name each column only (``{"column_name": "User Email", "string_value": ...}``, no
``column_id``): the names of the standard columns are read as their ids. Shapes:
https://developers.google.com/google-ads/webhook/docs/implementation (and its earlier versions).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from transforms.messages import GOOGLE_ADS_KEY_FIELD
from transforms.parsers.base import (
    ParseConfig,
    ParseError,
    RawLead,
    clean,
    load_json_object,
    parse_timestamp,
    scalar_text,
)

PROVIDER = "google_ads_lead_form"

COLUMN_MAP: dict[str, str] = {
    "FULL_NAME": "full_name",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "POSTAL_CODE": "postal_code",
    "CITY": "city",
    "REGION": "state",
    "COUNTRY": "country",
    "STREET_ADDRESS": "property_address",
}
COLUMN_MAP.update({"GIVEN_NAME": "first_name", "FAMILY_NAME": "last_name"})  # the Google Ads API's enum names
# Used only when the primary column is absent; always kept in extra as well.
FALLBACK_COLUMNS: dict[str, str] = {"WORK_EMAIL": "email", "WORK_PHONE": "phone"}
# The column names of the standard columns in payloads without column ids (lower case).
COLUMN_IDS_BY_NAME: dict[str, str] = {
    "full name": "FULL_NAME", "name": "FULL_NAME", "first name": "FIRST_NAME", "last name": "LAST_NAME",
    "user email": "EMAIL", "email": "EMAIL", "email address": "EMAIL", "user phone": "PHONE_NUMBER",
    "phone number": "PHONE_NUMBER", "phone": "PHONE_NUMBER", "postal code": "POSTAL_CODE", "zip code": "POSTAL_CODE",
    "street address": "STREET_ADDRESS", "city": "CITY", "region": "REGION", "state": "REGION",
    "province": "REGION", "country": "COUNTRY", "work email": "WORK_EMAIL", "work phone": "WORK_PHONE",
}
_EXTRAS = ("adgroup_id", "gcl_id", "api_version", "asset_group_id", "lead_stage")
_MESSAGE_WORDS = ("MESSAGE", "COMMENT", "QUESTION")



def _check_key(payload: Mapping[str, Any], expected: str | None) -> None:
    if not expected:
        return
    given = payload.get(GOOGLE_ADS_KEY_FIELD)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise ParseError("invalid_google_key", "google_key does not match the configured Google Ads key")


def _submit_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_timestamp(value, field_name="lead_submit_time")


def _columns(data: Any) -> list[tuple[str, str | None, str]]:
    """(column_id, column_name, value) for every answered column."""
    if not isinstance(data, list):
        raise ParseError("invalid_field", "user_column_data: expected a list")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ParseError("invalid_field", f"user_column_data[{i}]: expected an object")
        column_id = item.get("column_id")
        name = item.get("column_name")
        if column_id is not None and not isinstance(column_id, str):
            raise ParseError("invalid_field", f"user_column_data[{i}].column_id: expected a string")
        if isinstance(item.get("string_value"), (dict, list)):
            raise ParseError("invalid_field", f"user_column_data[{i}].string_value: expected a string")
        value = scalar_text(item.get("string_value"))
        column_id = clean(column_id)
        name = clean(name) if isinstance(name, str) else None
        if column_id is None and name is not None:
            column_id = COLUMN_IDS_BY_NAME.get(" ".join(name.lower().split()))
        if value is not None and (column_id or name):
            out.append(((column_id or "").upper(), name, value))
    return out


def parse(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """One lead form webhook body -> one RawLead."""
    payload = load_json_object(text, config.limits)
    _check_key(payload, config.google_ads_key)
    if isinstance(payload.get("lead_id"), (dict, list, bool)):
        raise ParseError("invalid_field", "lead_id: expected a string")
    lead_id = clean(payload.get("lead_id"))
    if lead_id is None:
        raise ParseError("missing_field", "lead_id: required")
    if "user_column_data" not in payload:
        raise ParseError("missing_field", "user_column_data: required")
    fields: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    extra: dict[str, str] = {}
    messages: list[str] = []
    for column_id, name, value in _columns(payload["user_column_data"]):
        target = COLUMN_MAP.get(column_id)
        if target is not None:
            fields.setdefault(target, value)
            continue
        if column_id in FALLBACK_COLUMNS:
            fallbacks.setdefault(FALLBACK_COLUMNS[column_id], value)
        extra[name or column_id] = value
        if any(word in column_id for word in _MESSAGE_WORDS):
            messages.append(value)
    for target, value in fallbacks.items():
        fields.setdefault(target, value)
    for key in _EXTRAS:
        value = scalar_text(payload.get(key))
        if value is not None:
            extra[key] = value
    is_test = payload.get("is_test")
    return [
        RawLead(
            provider=PROVIDER,
            external_id=lead_id,
            event_time=_submit_time(payload.get("lead_submit_time")),
            message="\n".join(messages) or None,
            is_test=is_test is True or (isinstance(is_test, str) and is_test.strip().lower() == "true"),
            campaign_id=scalar_text(payload.get("campaign_id")),
            form_id=scalar_text(payload.get("form_id")),
            ad_id=scalar_text(payload.get("creative_id")),
            extra=extra,
            **fields,
        )
    ]
