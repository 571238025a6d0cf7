"""Normalization: E.164 phones (US, UK, India, more), e-mails, names, identity and its dead letters."""

from datetime import UTC, datetime

import pytest

from transforms.normalize import (
    NormalizeError,
    Unit,
    normalize_country,
    normalize_email,
    normalize_phone,
    normalize_text,
    normalize_unit,
)
from transforms.parsers.base import RawLead

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("+1 415 555 0123", "GB", "+14155550123"),  # an explicit country code wins over the region
        ("1-415-555-0123", "US", "+14155550123"),
        ("07700 900123", "GB", None),  # Ofcom drama range: parses but is not a valid number
        ("07911 123456", "GB", "+447911123456"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("98765 43210", "IN", "+919876543210"),
        ("+91 98765 43210", "US", "+919876543210"),
        ("919876543210", "IN", "+919876543210"),
        ("022 2778 2011", "IN", "+912227782011"),
        ("+61 412 345 678", "US", "+61412345678"),
        ("+49 30 901820", "US", "+4930901820"),
    ],
)
def test_phone_to_e164(raw, region, expected):
    e164, status = normalize_phone(raw, region)
    assert e164 == expected
    assert status == ("valid" if expected else "invalid")


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [  # how people type a number into a form or an export
        ("(mobile) +1 415 555 0123", "US", "+14155550123"),
        ("415.555.0123 (mobile)", "US", "+14155550123"),
        ("cell: 415-555-0123", "US", "+14155550123"),
        ("Mobile: +44 7911 123456", "US", "+447911123456"),
        ("+1 212 555 0101 ext. 12", "US", "+12125550101"),
        ("+1 (415) 555-0123 x12", "US", "+14155550123"),
        ("415-555-0123 / 415-555-0124", "US", "+14155550123"),  # the first of two
        ("call me at 415 555 0123 after 5pm", "US", "+14155550123"),
        ("+91 98765 43210 (whatsapp)", "US", "+919876543210"),
        ("tel:+14155550123", "US", "+14155550123"),
        ("(mobile) 07700 900123", "GB", None),  # still no valid number in it
    ],
)
def test_a_number_with_words_around_it_keeps_its_number(raw, region, expected):
    assert normalize_phone(raw, region) == ((expected, "valid") if expected else (None, "invalid"))


@pytest.mark.parametrize("raw", ["123", "not a phone", "+1 000 000 0000", "555-0123", "+999 1234567"])
def test_invalid_phones_are_never_identity(raw):
    assert normalize_phone(raw, "US") == (None, "invalid")


def test_missing_phone():
    assert normalize_phone("  ", "US") == (None, "missing")
    assert normalize_phone(None, "US") == (None, "missing")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John.Doe@Gmail.COM", "john.doe@gmail.com"),
        ("  priya@example.co.in ", "priya@example.co.in"),
        ("mailto:Sam@Corp.io", "sam@corp.io"),
    ],
)
def test_email_normalized(raw, expected):
    assert normalize_email(raw) == (expected, "valid")


@pytest.mark.parametrize("raw", ["bad@", "no-at-sign", "a@b", "two@@example.com", "x@-bad-.com"])
def test_email_invalid(raw):
    assert normalize_email(raw) == (None, "invalid")


def test_country_codes_and_names():
    assert normalize_country("us") == "US"
    assert normalize_country("United Kingdom") == "GB"
    assert normalize_country("India") == "IN"
    assert normalize_country("Narnia") is None
    assert normalize_country("ZZ") is None


def test_text_trimmed_and_collapsed():
    assert normalize_text("  Jane \n  van   Dyke ") == "Jane van Dyke"
    assert normalize_text("   ") is None


def unit(**raw_fields) -> Unit:
    raw = RawLead(provider=raw_fields.pop("provider", "api"), **raw_fields)
    return Unit("m1", "m1", T0, {"provider": raw.provider}, b"{}", raw.provider, True, raw)


def test_unit_identity_prefers_phone_and_payload_country():
    lead = normalize_unit(unit(phone="98765 43210", country="IN", email="A@B.com", first_name=" Asha ",
                               last_name="Rao", postal_code=" sw1a 1aa "))
    assert lead.identity_key == "phone:+919876543210"
    assert lead.email == "a@b.com"
    assert lead.full_name == "Asha Rao"
    assert lead.postal_code == "SW1A 1AA"
    assert lead.event_time == T0  # no provider time: the publish time


def test_unit_identity_falls_back_to_email():
    lead = normalize_unit(unit(phone="123", email="Lead@Example.org"))
    assert lead.identity_key == "email:lead@example.org"
    assert lead.phone_e164 is None and lead.phone_status == "invalid"


def test_default_region_applies_without_country():
    assert normalize_unit(unit(phone="020 7946 0958"), "GB").phone_e164 == "+442079460958"
    with pytest.raises(NormalizeError):
        normalize_unit(unit(phone="020 7946 0958"), "US")


@pytest.mark.parametrize(
    ("fields", "error_type"),
    [
        ({}, "missing_contact"),
        ({"phone": "12"}, "invalid_phone"),
        ({"email": "nope@"}, "invalid_email"),
        ({"phone": "12", "email": "nope@"}, "invalid_contact"),
    ],
)
def test_no_identity_is_an_error(fields, error_type):
    with pytest.raises(NormalizeError) as e:
        normalize_unit(unit(full_name="Jane Secret", **fields))
    assert e.value.error_type == error_type
    assert "Jane" not in e.value.message and "12" not in e.value.message
