"""What every provider parser shares: the RawLead it returns, the error it raises, its config.

A parser is a pure function ``parse(text, attributes, config) -> list[RawLead]``. It raises
``ParseError`` with a machine-readable ``error_type`` and a readable message that never contains
PII (no phone numbers, e-mails or names from the payload). Most providers return one RawLead;
``csv_upload`` returns one per row.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from transforms.messages import JsonRejected, RejectedInput, decode_json

if TYPE_CHECKING:
    from transforms.sources import SourceRegistry



@dataclass(frozen=True)
class ParseLimits:
    """How large or deep a payload may be before it is refused: each breach is a ParseError with its own
    error type (``LIMIT_ERRORS``), so it ends as a dead letter carrying the original payload. The defaults and why
    each limit exists: docs/input-limits.md. Every check is linear in the payload and runs before (or instead of)
    the work the limit protects."""

    max_json_depth: int = 64  # nesting of [ and {: refused before the decoder can hit Python's recursion limit
    max_json_containers: int = 10_000  # arrays and objects in one JSON payload (each a Python object to build)
    max_json_keys: int = 10_000  # keys of all objects in one JSON payload together
    max_csv_rows: int = 50_000  # data rows of one upload
    max_csv_columns: int = 500  # cells of one CSV record (the header or a row)
    max_form_fields: int = 1_000  # fields of one form-encoded (Twilio) body
    max_form_chars: int = 65_536  # one form-encoded (Twilio) body: Twilio's are a few KB (an SMS is 1,600 characters)
    max_mime_depth: int = 12  # containers (multipart/*, message/*) nested inside each other in one e-mail
    max_mime_parts: int = 256  # MIME parts of one e-mail, containers included, the top-level message not
    max_headers: int = 500  # header fields of one header block (the message's or one part's)
    max_header_chars: int = 32_768  # one header field, name and unfolded value
    max_encoded_words: int = 100  # RFC 2047 encoded words (=?charset?q?...?=) in one header field

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), int) or getattr(self, f.name) < 1:
                raise ValueError(f"ParseLimits.{f.name} must be a positive integer")


# limit -> the error type of its breach
LIMIT_ERRORS: dict[str, str] = {
    "max_json_depth": "json_too_deep",
    "max_json_containers": "json_too_many_containers",
    "max_json_keys": "json_too_many_keys",
    "max_csv_rows": "csv_too_many_rows",
    "max_csv_columns": "csv_too_many_columns",
    "max_form_fields": "form_too_many_fields",
    "max_form_chars": "form_too_large",
    "max_mime_depth": "mime_too_deep",
    "max_mime_parts": "mime_too_many_parts",
    "max_headers": "too_many_headers",
    "max_header_chars": "header_too_long",
    "max_encoded_words": "too_many_encoded_words",
}
DEFAULT_LIMITS = ParseLimits()


class ParseError(RejectedInput):
    """A payload that cannot become a lead. ``error_type`` is stable; ``message`` is PII-free."""


def limit_exceeded(limit: str, message: str) -> ParseError:
    """The ParseError of a breached ``ParseLimits`` field (its error type from ``LIMIT_ERRORS``)."""
    return ParseError(LIMIT_ERRORS[limit], message)


@dataclass
class RawLead:
    """A lead as one provider sent it, before normalization. Every field is optional text."""

    provider: str
    external_id: str | None = None
    event_time: datetime | None = None  # timezone-aware; None means "use the message publish time"
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    country: str | None = None  # ISO alpha-2 when the provider gives one
    # where a number written without its country code belongs when the payload names no country (a provider's home
    # market: Knowlarity's is India); unlike ``country`` it says nothing of where the person is
    phone_region: str | None = None
    postal_code: str | None = None
    city: str | None = None
    state: str | None = None
    property_address: str | None = None
    message: str | None = None
    is_test: bool = False
    source_id: str | None = None  # set by the e-mail parser (registry match); others use the provider default
    source_verified: bool = True
    campaign_id: str | None = None
    form_id: str | None = None
    ad_id: str | None = None
    unit_index: int | None = None  # row number for csv_upload (1-based, header excluded)
    # the unit's own part of a multi-unit payload (csv_upload: the header and its row): what its dead letter keeps,
    # so a bad row never copies other people's rows
    unit_payload: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def replace(self, **changes: Any) -> RawLead:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ParseConfig:
    """Settings parsers need. ``google_ads_key``: when set, Google Ads leads must carry it. ``limits``: how large
    or deep a payload may be (``ParseLimits``)."""

    registry: SourceRegistry
    google_ads_key: str | None = None
    naive_timezone: str = "UTC"  # how timestamps without an offset are read, unless a provider says otherwise
    limits: ParseLimits = DEFAULT_LIMITS


class Parser(Protocol):
    def __call__(self, text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]: ...


# A JSON string, escapes included; an unterminated one runs to the end, so every match succeeds where it starts and
# stripping strings stays linear whatever the text.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _deeper_than(brackets: str, limit: int) -> bool:
    """True when the brackets (nothing else) nest deeper than ``limit``."""
    depth = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _check_json_shape(text: str, limits: ParseLimits) -> None:
    """Refuse JSON nested deeper than ``max_json_depth``, with more than ``max_json_containers`` arrays and objects
    or more than ``max_json_keys`` keys, before decoding. Strings are stripped and brackets and colons counted by the
    regex engine and ``str.count`` (C); only the first ``2 * max_json_containers`` brackets are walked in Python, so
    the check costs about the same for any shape. (The decoder counts keys exactly as well: ``decode_json``.)"""
    depth, containers, keys = limits.max_json_depth, limits.max_json_containers, limits.max_json_keys
    stripped = None
    if text.count("[") + text.count("{") > min(depth, containers):  # else: fewer brackets than either limit
        stripped = _JSON_STRING.sub("", text)
        brackets = _NOT_BRACKET.sub("", stripped)
        if _deeper_than(brackets[:2 * containers + 2], depth):
            raise limit_exceeded("max_json_depth", f"JSON nests deeper than {depth} levels")
        if brackets.count("[") + brackets.count("{") > containers:
            raise limit_exceeded("max_json_containers", f"JSON holds more than {containers} arrays and objects")
    if text.count(":") > keys:  # each key has one colon outside strings
        stripped = _JSON_STRING.sub("", text) if stripped is None else stripped
        if stripped.count(":") > keys:
            raise limit_exceeded("max_json_keys", f"JSON objects hold more than {keys} keys")


def load_json_object(text: str, limits: ParseLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode a JSON object, rejecting invalid JSON, non-objects, absurd nesting and too many keys clearly."""
    _check_json_shape(text, limits)
    try:
        value = decode_json(text, max_keys=limits.max_json_keys)
    except JsonRejected as e:
        raise ParseError(e.error_type, e.message) from None
    if not isinstance(value, dict):
        raise ParseError("invalid_json", f"expected a JSON object, got {type(value).__name__}")
    return value


def parse_timestamp(value: Any, *, naive_timezone: str = "UTC", field_name: str = "timestamp") -> datetime:
    """ISO 8601 / RFC 3339 text, '+0000' offsets, or Unix seconds -> an aware UTC datetime."""
    if isinstance(value, bool):
        raise ParseError("invalid_timestamp", f"{field_name}: expected a time, got a boolean")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ParseError("invalid_timestamp", f"{field_name}: Unix time out of range") from None
    if not isinstance(value, str) or not value.strip():
        raise ParseError("invalid_timestamp", f"{field_name}: expected a time string")
    text = value.strip()
    if text.isdigit() and len(text) >= 9:
        return parse_timestamp(int(text[:10]) if len(text) > 10 else int(text), field_name=field_name)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ParseError("invalid_timestamp", f"{field_name}: not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(naive_timezone))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset, year 9999 with a negative one
        raise ParseError("invalid_timestamp", f"{field_name}: out of range") from None


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as trimmed text (booleans as true/false); containers are not scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return clean(value)
    return None


# Characters people paste without seeing them (zero-width space/joiners, word joiner, BOM, soft hyphen): removed
# from identifiers the same way whichever parser read them.
INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def strip_invisible(text: str) -> str:
    return INVISIBLE.sub("", text)


def clean(value: Any) -> str | None:
    """Text trimmed to None when empty; non-text values become their string form."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None
