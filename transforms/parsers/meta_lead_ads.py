"""Parser for Meta (Facebook / Instagram) Lead Ads: the Graph API lead object.

We receive the lead object as the Graph API returns it (``GET /<leadgen_id>``)::

    {"id": "...", "created_time": "2026-11-20T14:03:22+0000", "ad_id": "...", "adset_id": "...",
     "campaign_id": "...", "form_id": "...", "is_organic": false, "platform": "fb",
     "field_data": [{"name": "full_name", "values": ["..."]}, ...]}

Standard question names (Meta's prefill questions: full_name, first_name, last_name, email, phone_number,
street_address, city, state, province, country, post_code, zip_code; the others, such as date_of_birth, gender,
job_title, company_name, go to ``extra``) map to lead fields; work_email and work_phone_number stand in for a
missing email or phone. Any other question goes to ``extra`` under its own name, and questions whose name
mentions a message, comment or question also become ``message``.
The leadgen *webhook* envelope only carries ids, so it is rejected: the lead must be fetched from
the Graph API before it is published to Leadflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from transforms.parsers.base import (
    ParseConfig,
    ParseError,
    RawLead,
    clean,
    load_json_object,
    parse_timestamp,
    scalar_text,
)

PROVIDER = "meta_lead_ads"

# Meta's standard question names (lower-cased, spaces as underscores) -> RawLead field.
FIELD_MAP: dict[str, str] = {
    "full_name": "full_name",
    "first_name": "first_name",
    "last_name": "last_name",
    "phone_number": "phone",
    "phone": "phone",
    "email": "email",
    "city": "city",
    "state": "state",
    "province": "state",
    "zip_code": "postal_code",
    "zip": "postal_code",
    "post_code": "postal_code",
    "postal_code": "postal_code",
    "country": "country",
    "street_address": "property_address",
}
# Meta's work-contact questions stand in for a missing email / phone (kept in extra as well), as Google's do.
FALLBACK_FIELDS: dict[str, str] = {"work_email": "email", "work_phone_number": "phone"}
_MESSAGE_WORDS = ("message", "comment", "question")
# Lead-object metadata copied into ``extra`` (written after the answers, so it wins on a clash).
_META_EXTRAS = ("adset_id", "platform", "is_organic", "ad_name", "adset_name", "campaign_name", "form_name",
                "partner_name", "retailer_item_id")
_OFFSET_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")
_SPACES = re.compile(r"\s+")




def _require_id(payload: Mapping[str, Any]) -> str:
    raw = payload.get("id")
    if isinstance(raw, (dict, list, bool)):
        raise ParseError("invalid_field", "id: expected a string")
    external_id = clean(raw)
    if external_id is None:
        raise ParseError("missing_field", "id: required")
    return external_id


def _meta_timestamp(value: Any) -> datetime | None:
    """Meta writes offsets as '+0000'; make them ISO 8601 before the shared parser reads them."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = _OFFSET_NO_COLON.sub(r"\1:\2", value.strip())
    return parse_timestamp(value, field_name="created_time")


def _answers(field_data: Any) -> list[tuple[str, str]]:
    """(question name, answer text) pairs; multiple values are joined with ', '."""
    if not isinstance(field_data, list):
        raise ParseError("invalid_field", "field_data: expected a list")
    out = []
    for i, item in enumerate(field_data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ParseError("invalid_field", f"field_data[{i}]: expected an object with a name")
        values = item.get("values", [])
        if not isinstance(values, list):
            values = [values]
        texts = []
        for value in values:
            if isinstance(value, (dict, list)):
                raise ParseError("invalid_field", f"field_data[{i}].values: expected text values")
            text = scalar_text(value)
            if text is not None:
                texts.append(text)
        name = item["name"].strip()
        if name and texts:
            out.append((name, ", ".join(texts)))
    return out


def parse(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """One Graph API lead object -> one RawLead."""
    payload = load_json_object(text, config.limits)
    if "entry" in payload and "field_data" not in payload:
        raise ParseError(
            "unsupported_meta_webhook",
            "this is a Meta leadgen webhook envelope, not a lead: fetch the lead from the Graph API "
            "and publish the lead object",
        )
    external_id = _require_id(payload)
    if "field_data" not in payload:
        raise ParseError("missing_field", "field_data: required")
    fields: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    extra: dict[str, str] = {}
    messages: list[str] = []
    for name, answer in _answers(payload["field_data"]):
        key = _SPACES.sub("_", name.lower())
        target = FIELD_MAP.get(key)
        if target is not None:
            fields.setdefault(target, answer)
            continue
        if key in FALLBACK_FIELDS:
            fallbacks.setdefault(FALLBACK_FIELDS[key], answer)
        extra[name] = answer
        if any(word in key for word in _MESSAGE_WORDS):
            messages.append(answer)
    for target, value in fallbacks.items():
        fields.setdefault(target, value)
    for key in _META_EXTRAS:
        value = scalar_text(payload.get(key))
        if value is not None:
            extra[key] = value
    return [
        RawLead(
            provider=PROVIDER,
            external_id=external_id,
            event_time=_meta_timestamp(payload.get("created_time")),
            message="\n".join(messages) or None,
            campaign_id=scalar_text(payload.get("campaign_id")),
            form_id=scalar_text(payload.get("form_id")),
            ad_id=scalar_text(payload.get("ad_id")),
            extra=extra,
            **fields,
        )
    ]
