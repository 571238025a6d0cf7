"""Normalize stage: a RawLead becomes a NormalizedLead with an identity, or a dead letter.

- Phones become E.164 with ``phonenumbers``: a country given in the payload wins, else the
  ``default_region``. A number that does not parse or is not valid is never used as identity.
- E-mails are syntax-checked and normalized with ``email-validator`` (no DNS), then lower-cased.
- Names are trimmed with inner whitespace collapsed; timestamps are UTC.
- Free text that ends in CRM exports and spreadsheets (names, message, city, state, address) is formula-safe:
  a value starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading ``'``, as OWASP
  recommends against CSV injection; the original stays in the raw payload (Pub/Sub, dead letters).
- A phone or e-mail on the identity blocklist (``transforms.blocklist``: placeholders, role addresses, our own
  numbers) is dropped: it is no contact (status ``blocked``).
- Identity key (the first sighting's): ``phone:<E.164>`` when the phone is valid, else ``email:<address>``;
  neither is a dead letter (``missing_contact``, ``invalid_phone``, ``invalid_email`` or ``blocked_contact``).
  Which person an event belongs to is decided later from both (``transforms.identity``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

import apache_beam as beam
import phonenumbers
from apache_beam.metrics import Metrics
from email_validator import EmailNotValidError, validate_email

from transforms.blocklist import Blocklist
from transforms.messages import RejectedInput, dead_letter
from transforms.parsers.base import RawLead, strip_invisible

MAX_NAME_LENGTH = 300
MAX_TEXT_LENGTH = 10_000
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # OWASP, "CSV Injection"

_COUNTRY_NAMES = {
    "UNITED STATES": "US", "UNITED STATES OF AMERICA": "US", "USA": "US", "U.S.": "US", "U.S.A.": "US",
    "UNITED KINGDOM": "GB", "UK": "GB", "GREAT BRITAIN": "GB", "ENGLAND": "GB", "INDIA": "IN",
    "CANADA": "CA", "AUSTRALIA": "AU", "GERMANY": "DE", "FRANCE": "FR", "IRELAND": "IE",
}
_WS = re.compile(r"\s+")


class NormalizeError(RejectedInput):
    """A lead without a usable identity (no valid phone and no valid e-mail)."""


@dataclass
class Unit:
    """A parsed lead with the message it came from: what flows from Parse into Normalize."""

    unit_id: str
    message_id: str
    publish_time: datetime
    attributes: dict[str, str]
    data: bytes
    source_id: str
    source_verified: bool
    raw: RawLead
    upload: dict[str, str] = field(default_factory=dict)  # a row of an upload: the upload's id, size and SHA-256


@dataclass
class NormalizedLead:
    """A lead with a validated identity; what the dedup stage keys on."""

    unit_id: str
    message_id: str
    identity_key: str
    provider: str
    source_id: str
    source_verified: bool
    external_id: str | None
    event_time: datetime
    publish_time: datetime
    phone_e164: str | None
    phone_status: str  # valid | invalid | missing | blocked
    email: str | None
    email_status: str  # valid | invalid | missing | blocked
    full_name: str | None
    first_name: str | None
    last_name: str | None
    country: str | None
    postal_code: str | None
    city: str | None
    state: str | None
    property_address: str | None
    message: str | None
    is_test: bool
    campaign_id: str | None
    form_id: str | None
    ad_id: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    payload_sha256: str = ""  # of the unit's bytes: tells a replayed message of an erased person (identity)


def formula_safe(text: str | None) -> str | None:
    """Text a spreadsheet would run as a formula, prefixed with ``'`` so it is shown as text."""
    return "'" + text if text and text.startswith(FORMULA_TRIGGERS) else text


def normalize_text(value: str | None, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """Trim and collapse whitespace; None for empty."""
    if value is None:
        return None
    text = _WS.sub(" ", value).strip()
    return text[:limit] or None


def normalize_country(value: str | None) -> str | None:
    """ISO alpha-2 (upper-case) for codes and common names phonenumbers knows; else None."""
    text = normalize_text(value)
    if not text:
        return None
    upper = text.upper()
    code = upper if len(upper) == 2 else _COUNTRY_NAMES.get(upper)
    return code if code in _supported_regions() else None


@functools.cache
def _supported_regions() -> frozenset[str]:
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


def normalize_phone(value: str | None, region: str) -> tuple[str | None, str]:
    """(E.164 or None, status) where status is valid | invalid | missing."""
    text = normalize_text(strip_invisible(value) if value else value, 64)
    if not text:
        return None, "missing"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        number = number_in_text(text, region)
        if number is None:
            return None, "invalid"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), "valid"


def number_in_text(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    """The first valid number written among other words ("415.555.0101 (mobile)", "Mobile: +44 7911 123456",
    "415-555-0101 / 415-555-0102"), found by phonenumbers' own matcher; the field is at most 64 characters."""
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID, max_tries=8):
        return match.number
    return None


def normalize_email(value: str | None) -> tuple[str | None, str]:
    """(normalized lower-case address or None, status) where status is valid | invalid | missing."""
    text = normalize_text(strip_invisible(value) if value else value, 320)
    if not text:
        return None, "missing"
    if text.lower().startswith("mailto:"):
        text = text[7:]
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None, "invalid"
    return result.normalized.lower(), "valid"


def full_name_of(raw: RawLead) -> str | None:
    name = normalize_text(raw.full_name, MAX_NAME_LENGTH)
    if name:
        return name
    parts = [normalize_text(raw.first_name, MAX_NAME_LENGTH), normalize_text(raw.last_name, MAX_NAME_LENGTH)]
    return normalize_text(" ".join(p for p in parts if p), MAX_NAME_LENGTH)


def normalize_unit(unit: Unit, default_region: str = "US", blocklist: Blocklist | None = None) -> NormalizedLead:
    """The pure normalization of one unit. Raises NormalizeError when no identity can be formed."""
    raw = unit.raw
    country = normalize_country(raw.country)
    phone, phone_status = normalize_phone(raw.phone, country or raw.phone_region or default_region)
    email, email_status = normalize_email(raw.email)
    if blocklist is not None:
        if phone and blocklist.reason("phone", phone):
            phone, phone_status = None, "blocked"
        if email and blocklist.reason("email", email):
            email, email_status = None, "blocked"
    if phone:
        identity = "phone:" + phone
    elif email:
        identity = "email:" + email
    elif "blocked" in (phone_status, email_status):
        raise NormalizeError("blocked_contact", "every contact of the lead is on the identity blocklist "
                             "(placeholder, role address or one of our own numbers)")
    elif phone_status == "invalid" and email_status == "missing":
        raise NormalizeError("invalid_phone", "the phone number is not valid and there is no e-mail")
    elif email_status == "invalid" and phone_status == "missing":
        raise NormalizeError("invalid_email", "the e-mail address is not valid and there is no phone")
    elif phone_status == "invalid" and email_status == "invalid":
        raise NormalizeError("invalid_contact", "neither the phone number nor the e-mail address is valid")
    else:
        raise NormalizeError("missing_contact", "the lead has no phone number and no e-mail address")
    postal = normalize_text(raw.postal_code, 20)
    return NormalizedLead(
        unit_id=unit.unit_id,
        message_id=unit.message_id,
        identity_key=identity,
        provider=raw.provider,
        source_id=unit.source_id,
        source_verified=unit.source_verified,
        external_id=normalize_text(raw.external_id, 200),
        event_time=raw.event_time or unit.publish_time,
        publish_time=unit.publish_time,
        phone_e164=phone,
        phone_status=phone_status,
        email=email,
        email_status=email_status,
        full_name=formula_safe(full_name_of(raw)),
        first_name=formula_safe(normalize_text(raw.first_name, MAX_NAME_LENGTH)),
        last_name=formula_safe(normalize_text(raw.last_name, MAX_NAME_LENGTH)),
        country=country,
        postal_code=postal.upper() if postal else None,
        city=formula_safe(normalize_text(raw.city, 200)),
        state=formula_safe(normalize_text(raw.state, 200)),
        property_address=formula_safe(normalize_text(raw.property_address, 500)),
        message=formula_safe(normalize_text(raw.message)),
        is_test=bool(raw.is_test),
        campaign_id=normalize_text(raw.campaign_id, 200),
        form_id=normalize_text(raw.form_id, 200),
        ad_id=normalize_text(raw.ad_id, 200),
        attributes=unit.attributes,
        payload_sha256=hashlib.sha256(unit.data).hexdigest(),
    )


class NormalizeDoFn(beam.DoFn):
    """Thin wrapper: NormalizedLead on the main output, DeadLetter on ``dead_letters``."""

    DEAD_LETTERS = "dead_letters"

    def __init__(self, default_region: str, reference_data: str | None = None):
        self.default_region, self.reference_data = default_region, reference_data
        self.normalized = Metrics.counter("normalize", "normalized")
        self.rejected = Metrics.counter("normalize", "dead_letters")
        self.blocked = Metrics.counter("identity", "blocked_identifiers")

    def setup(self):
        self.blocklist = Blocklist.load(self.reference_data)

    def process(self, unit: Unit):
        try:
            lead = normalize_unit(unit, self.default_region, self.blocklist)
        except NormalizeError as e:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTERS, dead_letter(
                message_id=unit.unit_id, data=unit.data, attributes={**unit.attributes, **unit.upload},
                publish_time=unit.publish_time, provider=unit.raw.provider, stage="normalize",
                error_type=e.error_type, error_message=e.message,
            ))
            return
        self.normalized.inc()
        self.blocked.inc((lead.phone_status == "blocked") + (lead.email_status == "blocked"))
        yield lead


class NormalizeLeads(beam.PTransform):
    """Units -> NormalizedLead (main) and DeadLetter (``dead_letters``)."""

    def __init__(self, default_region: str = "US", reference_data: str | None = None):
        super().__init__()
        self.default_region, self.reference_data = default_region, reference_data

    def expand(self, units):
        normalize = NormalizeDoFn(self.default_region, self.reference_data)
        return units | "NormalizeUnit" >> beam.ParDo(normalize).with_outputs(NormalizeDoFn.DEAD_LETTERS, main="leads")
