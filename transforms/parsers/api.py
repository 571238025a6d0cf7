"""Parser for Leadflow's own lead API (provider ``api``).

The body is validated against the JSON Schema derived from ``schemas.records.ApiLeadPayload``.
Every problem is reported at once, as ``<field>: <what is wrong>``, without echoing the
offending value (it may be PII). At least one of ``phone`` and ``email`` must be non-empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from schemas.derive import json_schema
from schemas.records import ApiLeadPayload
from transforms.messages import safe_name
from transforms.parsers.base import ParseConfig, ParseError, RawLead, clean, load_json_object, parse_timestamp

PROVIDER = "api"
MAX_REPORTED_PROBLEMS = 20

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_FORMAT_CHECKER = FormatChecker()


@_FORMAT_CHECKER.checks("date-time")
def _is_rfc3339(value: object) -> bool:
    """RFC 3339 date-time (jsonschema checks it only with an optional extra, so we do it here)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        return False
    return True


SCHEMA = json_schema(ApiLeadPayload)
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=_FORMAT_CHECKER)
_TEXT_FIELDS = (
    "full_name",
    "first_name",
    "last_name",
    "phone",
    "email",
    "country",
    "postal_code",
    "city",
    "state",
    "message",
    "property_address",
)


def _type_names(value: Any) -> str:
    names = [value] if isinstance(value, str) else list(value)
    return " or ".join(n for n in names if n != "null") + (" or null" if "null" in names else "")


def _describe(err: ValidationError) -> list[str]:
    """Readable, value-free descriptions of one schema error."""
    path = ".".join(str(p) for p in err.absolute_path) or "(root)"
    kind, expected, instance = err.validator, err.validator_value, err.instance
    if kind == "required":
        present = instance if isinstance(instance, dict) else {}
        return [f"{name}: required" for name in expected if name not in present]
    if kind == "additionalProperties":
        known = SCHEMA["properties"]
        return [f"{path}: unknown field {safe_name(k, i)}" for i, k in enumerate(instance, 1) if k not in known]
    if kind == "type":
        return [f"{path}: expected {_type_names(expected)}"]
    if kind == "pattern":
        return [f"{path}: does not match {expected}"]
    if kind == "maxLength":
        return [f"{path}: longer than {expected} characters"]
    if kind == "minLength":
        return [
            f"{path}: must not be empty" if expected == 1 else f"{path}: shorter than {expected} characters"
        ]
    if kind == "format":
        return [f"{path}: not a valid {expected}"]
    return [f"{path}: fails {kind}"]


def problems(payload: dict[str, Any]) -> list[str]:
    """Every schema problem of a decoded payload, plus the phone-or-email rule."""
    out: list[str] = []
    for err in sorted(VALIDATOR.iter_errors(payload), key=lambda e: [str(p) for p in e.absolute_path]):
        out.extend(_describe(err))
    external_id = payload.get("external_id")
    if isinstance(external_id, str) and external_id and not external_id.strip():
        out.append("external_id: must not be blank")
    phone, email = payload.get("phone"), payload.get("email")
    if not (isinstance(phone, str) and phone.strip()) and not (isinstance(email, str) and email.strip()):
        out.append("phone or email: at least one is required")
    return out



def parse(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """One API body -> one RawLead, or ParseError('validation_error') listing every problem."""
    payload = load_json_object(text, config.limits)
    found = problems(payload)
    if found:
        shown = found[:MAX_REPORTED_PROBLEMS]
        more = len(found) - len(shown)
        raise ParseError("validation_error", "; ".join(shown) + (f"; and {more} more" if more else ""))
    created_at = payload.get("created_at")
    extra = {"source": source} if (source := clean(payload.get("source"))) else {}
    return [
        RawLead(
            provider=PROVIDER,
            external_id=clean(payload["external_id"]),
            event_time=parse_timestamp(created_at, field_name="created_at") if created_at else None,
            is_test=payload.get("is_test") is True,
            extra=extra,
            **{name: clean(payload.get(name)) for name in _TEXT_FIELDS},
        )
    ]
