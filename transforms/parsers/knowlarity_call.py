"""Parser for Knowlarity IVR call-log records (one inbound call per message).

Knowlarity pushes a JSON record per call::

    {"uuid": "...", "customer_number": "+919876543210", "start_time": "2026-11-20 19:33:22+05:30",
     "call_duration": 42, "agent_number": "+918041234567", "knowlarity_number": "+918069012345",
     "call_type": "incoming", "Call_Status": "Connected"}

The caller's number is in ``customer_number`` (older accounts: ``caller_id``) and is required.
Times without an offset are Indian Standard Time (Knowlarity is an Indian provider), and so are
numbers written without a country code, as Indian call logs write them (``09876543210``,
``9876543210``, ``919876543210``, ``0091 98765 43210``; ``phone_region`` IN): a caller from
abroad has a ``+`` number. Call details go to ``extra`` as text; the number is passed through
untouched for the normalizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from transforms.parsers.base import (
    ParseConfig,
    ParseError,
    RawLead,
    load_json_object,
    parse_timestamp,
    scalar_text,
)

PROVIDER = "knowlarity_call"
KNOWLARITY_TIMEZONE = "Asia/Kolkata"
HOME_REGION = "IN"

# extra key -> payload keys, first present wins (Knowlarity's casing varies between products).
_EXTRAS: dict[str, tuple[str, ...]] = {
    "call_duration": ("call_duration", "duration"),
    "agent_number": ("agent_number",),
    "knowlarity_number": ("knowlarity_number", "dispnumber"),
    "call_type": ("call_type", "business_call_type"),
    "call_status": ("Call_Status", "call_status", "CallStatus"),
}



def _first(payload: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = scalar_text(payload.get(key))
        if value is not None:
            return value
    return None



def _start_time(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_timestamp(value, naive_timezone=KNOWLARITY_TIMEZONE, field_name="start_time")


def parse(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """One call-log record -> one RawLead (phone only)."""
    payload = load_json_object(text, config.limits)
    phone = _first(payload, ("customer_number", "caller_id"))
    if phone is None:
        raise ParseError("missing_contact", "customer_number (or caller_id): required")
    extra = {key: value for key, keys in _EXTRAS.items() if (value := _first(payload, keys)) is not None}
    return [
        RawLead(
            provider=PROVIDER,
            external_id=_first(payload, ("uuid",)),
            event_time=_start_time(payload.get("start_time")),
            phone=phone,
            phone_region=HOME_REGION,
            extra=extra,
        )
    ]
