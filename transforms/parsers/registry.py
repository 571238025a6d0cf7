"""Which parser reads a payload: the ``provider`` attribute, or else the payload's shape.

``PARSERS`` maps every provider name to its parser. ``detect_provider`` guesses the provider of
a payload published without a ``provider`` attribute; it looks only at the payload's shape
(first character, marker substrings, header lines), is cheap, and never raises.
``parse_payload`` puts the two together.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from collections.abc import Iterator, Mapping

from transforms.messages import safe_name
from transforms.parsers import (
    api,
    csv_upload,
    google_ads_lead_form,
    inbound_email,
    knowlarity_call,
    meta_lead_ads,
    twilio,
)
from transforms.parsers.base import (
    DEFAULT_LIMITS,
    LIMIT_ERRORS,
    ParseConfig,
    ParseError,
    ParseLimits,
    Parser,
    RawLead,
    clean,
    load_json_object,
)

INBOUND_EMAIL = inbound_email.PROVIDER
# Only this much of a payload is looked at to recognise e-mail headers or a CSV header row.
_SNIFF_CHARS = 65_536


PARSERS: dict[str, Parser] = {
    meta_lead_ads.PROVIDER: meta_lead_ads.parse,
    google_ads_lead_form.PROVIDER: google_ads_lead_form.parse,
    knowlarity_call.PROVIDER: knowlarity_call.parse,
    twilio.SMS_PROVIDER: twilio.parse_sms,
    twilio.VOICE_PROVIDER: twilio.parse_voice,
    api.PROVIDER: api.parse,
    csv_upload.PROVIDER: csv_upload.parse,
    INBOUND_EMAIL: inbound_email.parse,
}

_JSON_MARKERS = ('"field_data"', '"entry"', '"user_column_data"', '"uuid"', '"external_id"')
_FORM_MARKERS = ("MessageSid=", "SmsSid=", "CallSid=")
_EMAIL_HEADER = re.compile(r"([!-9;-~]+):")  # RFC 5322 field name: printable ASCII except ':'
_EMAIL_SIGNS = frozenset({"subject", "received", "mime-version"})


# What sniffing a payload's shape reports as such rather than as an unidentified payload: a limit's breach, and JSON
# that carries a provider's markers but is refused by the strict decoder (the same error as with the attribute).
_BREACHES = frozenset(LIMIT_ERRORS.values()) | {"json_non_finite_number", "json_number_too_long", "json_duplicate_key"}


class _Breach(Exception):
    """A payload refused while its shape is being sniffed (carries the ParseError): see ``_BREACHES``."""

    def __init__(self, error: ParseError):
        super().__init__(error.message)
        self.error = error


def _detect_json(text: str, limits: ParseLimits) -> str | None:
    if not any(marker in text for marker in _JSON_MARKERS):
        return None
    try:
        obj = load_json_object(text, limits)
    except ParseError as e:
        if e.error_type in _BREACHES:
            raise _Breach(e) from None
        return None
    if "id" in obj and "field_data" in obj:
        return meta_lead_ads.PROVIDER
    if "entry" in obj and obj.get("object") == "page":
        return meta_lead_ads.PROVIDER  # the leadgen webhook envelope; the parser explains the rejection
    if "user_column_data" in obj:
        return google_ads_lead_form.PROVIDER
    if "uuid" in obj and ("customer_number" in obj or "caller_id" in obj):
        return knowlarity_call.PROVIDER
    if "external_id" in obj:
        return api.PROVIDER
    return None


def _detect_form(text: str, limits: ParseLimits) -> str | None:
    body = text.strip()
    if "\n" in body or not any(marker in body for marker in _FORM_MARKERS):
        return None
    if len(body) > limits.max_form_chars:
        raise _Breach(twilio.too_large(limits.max_form_chars))
    try:
        keys = urllib.parse.parse_qs(body, keep_blank_values=True, max_num_fields=limits.max_form_fields).keys()
    except ValueError:
        raise _Breach(twilio.too_many_fields(limits.max_form_fields)) from None
    if "MessageSid" in keys or "SmsSid" in keys:
        return twilio.SMS_PROVIDER
    if "CallSid" in keys:
        return twilio.VOICE_PROVIDER
    return None


def _lines(text: str) -> Iterator[str]:
    """Lines of the sniffed prefix, lazily."""
    return iter(io.StringIO(text[:_SNIFF_CHARS]).readline, "")


def _looks_like_email(text: str) -> bool:
    """RFC 822 header lines (From: and Subject:/Received:/MIME-Version:) up to the first blank line."""
    names: set[str] = set()
    for i, line in enumerate(_lines(text.lstrip("\r\n"))):
        if not line.strip():
            break
        if line[0] in " \t":
            continue  # folded continuation of the previous header
        match = _EMAIL_HEADER.match(line)
        if match is None:
            if i == 0 and line.startswith("From "):
                continue  # mbox envelope line
            return False
        names.add(match.group(1).lower())
    return "from" in names and bool(names & _EMAIL_SIGNS)


def _looks_like_csv(text: str) -> bool:
    """A header row naming a phone or e-mail column, followed by at least one more non-blank line."""
    lines = (line for line in _lines(text) if line.strip())
    header = next(lines, None)
    if header is None:
        return False
    try:
        cells = next(csv.reader([header]), [])
    except csv.Error:
        return False
    if not any(csv_upload.canonical_header(cell) in csv_upload.CONTACT_HEADERS for cell in cells):
        return False
    return next(lines, None) is not None


def _detect(text: str, limits: ParseLimits) -> str | None:
    """``detect_provider``, raising _Breach when the sniffed JSON or form body breaches a limit."""
    if not isinstance(text, str):
        return None
    start = text.lstrip("\ufeff \t\r\n")[:1]
    if start == "{":
        return _detect_json(text, limits)
    if start in ("", "["):
        return None
    if _looks_like_email(text):
        return INBOUND_EMAIL
    form = _detect_form(text, limits)
    if form is not None:
        return form
    if _looks_like_csv(text):
        return csv_upload.PROVIDER
    return None


def detect_provider(text: str, limits: ParseLimits = DEFAULT_LIMITS) -> str | None:
    """The provider a payload's shape belongs to, or None when it is not recognisable (or breaches a limit)."""
    try:
        return _detect(text, limits)
    except _Breach:
        return None


def parse_payload(text: str, attributes: Mapping[str, str], config: ParseConfig) -> tuple[str, list[RawLead]]:
    """(provider, leads) for a payload: by its ``provider`` attribute, else by its shape."""
    named = clean(attributes.get("provider"))
    if named is not None:
        if named not in PARSERS:
            raise ParseError("unknown_provider", f"unknown provider attribute {safe_name(named)}; known: "
                             + ", ".join(sorted(PARSERS)))
        provider = named
    else:
        try:
            detected = _detect(text, config.limits)
        except _Breach as e:  # refused as such, with or without a provider attribute
            raise e.error from None
        if detected is None:
            raise ParseError(
                "unidentified_payload", "no provider attribute and the payload matches no known format"
            )
        provider = detected
    return provider, PARSERS[provider](text, attributes, config)
