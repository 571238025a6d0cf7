"""Fuzzing the parsers: whatever the text, only ParseError escapes and results are RawLead lists."""

from __future__ import annotations

import csv
import io
import json
import random
import urllib.parse
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.synthetic import leads as synthetic
from transforms.parsers import api, csv_upload, google_ads_lead_form, knowlarity_call, meta_lead_ads, twilio
from transforms.parsers.base import ParseConfig, ParseError, RawLead
from transforms.parsers.registry import PARSERS, detect_provider, parse_payload
from transforms.sources import SourceRegistry

pytestmark = pytest.mark.fuzz

CONFIG = ParseConfig(SourceRegistry.from_csv(), google_ads_key=synthetic.SYNTHETIC_GOOGLE_KEY)
OWN_PARSERS = {
    "meta_lead_ads": meta_lead_ads.parse,
    "google_ads_lead_form": google_ads_lead_form.parse,
    "knowlarity_call": knowlarity_call.parse,
    "twilio_sms": twilio.parse_sms,
    "twilio_voice": twilio.parse_voice,
    "api": api.parse,
    "csv_upload": csv_upload.parse,
}
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SMALL = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the parsers look at, so random objects often hit real code paths.
KNOWN_KEYS = (
    "id",
    "created_time",
    "field_data",
    "name",
    "values",
    "ad_id",
    "form_id",
    "campaign_id",
    "entry",
    "object",
    "lead_id",
    "user_column_data",
    "column_id",
    "string_value",
    "column_name",
    "google_key",
    "is_test",
    "uuid",
    "customer_number",
    "caller_id",
    "start_time",
    "call_duration",
    "Call_Status",
    "external_id",
    "phone",
    "email",
    "country",
    "created_at",
    "full_name",
    "message",
    "source",
)
COLUMN_IDS = ("FULL_NAME", "EMAIL", "PHONE_NUMBER", "WORK_EMAIL", "CITY", "ANY_QUESTIONS?")
TWILIO_KEYS = (
    "From",
    "To",
    "Body",
    "MessageSid",
    "SmsSid",
    "CallSid",
    "AccountSid",
    "FromCity",
    "FromState",
    "FromZip",
    "FromCountry",
    "CallStatus",
    "Direction",
)
CSV_HEADERS = ("phone", "Email", "Full Name", "created at", "id", "zip", "notes", "Agent", "")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "2026-11-20T14:03:22+0000",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31 23:59:59",
            "2026-11-20 19:33:22",
            "1794830602",
            "+14155550123",
            synthetic.SYNTHETIC_GOOGLE_KEY,
        ]
    )
    | st.sampled_from(COLUMN_IDS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), json_values, max_size=8)
form_bodies = st.dictionaries(
    st.sampled_from(TWILIO_KEYS) | st.text(max_size=6), st.text(max_size=20), max_size=8
).map(urllib.parse.urlencode)
raw_forms = st.lists(
    st.tuples(st.sampled_from(TWILIO_KEYS) | st.text(max_size=5), st.text(max_size=10)), max_size=6
).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))


def _csv_text(rows: list[list[str]], terminator: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    return out.getvalue()


csv_texts = st.builds(
    lambda header, rows, term: _csv_text([header, *rows], term),
    st.lists(st.sampled_from(CSV_HEADERS) | st.text(max_size=8), min_size=1, max_size=6),
    st.lists(
        st.lists(
            st.text(max_size=12) | st.sampled_from(["2026-11-20", "bad date", "+14155550123"]), max_size=7
        ),
        max_size=6,
    ),
    st.sampled_from(["\n", "\r\n", "\r"]),
)


def _rendered(provider: str, seed: int) -> tuple[str, synthetic.Person]:
    rng = random.Random(seed)
    person = synthetic.random_person(rng)
    text, _ = synthetic.render(
        provider,
        person,
        external_id=synthetic.make_external_id(provider, rng),
        event_time=datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC),
        rng=rng,
    )
    return text, person


@st.composite
def mutated_payloads(draw) -> tuple[str, str, synthetic.Person]:
    """(provider, rendered payload with random edits: JSON values replaced, text cut or spliced, person)."""
    provider = draw(st.sampled_from(synthetic.PROVIDERS))
    text, person = _rendered(provider, draw(st.integers(0, 50)))
    if text.startswith("{") and draw(st.booleans()):
        obj = json.loads(text)
        for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=3, unique=True)):
            if draw(st.booleans()):
                del obj[key]
            else:
                obj[key] = draw(json_values)
        return provider, json.dumps(obj), person
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 20)))
    return provider, text[:start] + draw(st.text(max_size=10)) + text[end:], person


def check(parser, text: str, secrets: tuple[str, ...] = ()) -> None:
    try:
        leads = parser(text, {}, CONFIG)
    except ParseError as e:
        assert isinstance(e.error_type, str) and e.error_type and isinstance(e.message, str)
        assert not [secret for secret in secrets if secret in e.message], "PII in an error message"
        return
    assert isinstance(leads, list) and leads and all(isinstance(lead, RawLead) for lead in leads)


def check_all(text: str) -> None:
    for parser in OWN_PARSERS.values():
        check(parser, text)
    provider = detect_provider(text)
    assert provider is None or provider in PARSERS
    if provider != "inbound_email":  # another module; its own fuzz tests cover it
        try:
            name, leads = parse_payload(text, {}, CONFIG)
        except ParseError:
            return
        assert name == provider and all(isinstance(lead, RawLead) for lead in leads)


@FUZZ
@given(st.text())
def test_arbitrary_text(text):
    check_all(text)


@FUZZ
@given(json_objects.map(json.dumps))
def test_random_json_objects(text):
    check_all(text)


@FUZZ
@given(mutated_payloads())
def test_mutated_rendered_payloads(case):
    provider, text, person = case
    check_all(text)
    secrets = (person.phone, person.phone[-7:], person.email, person.full_name)
    for parser in OWN_PARSERS.values():
        check(parser, text, secrets)
    check(lambda t, a, c: parse_payload(t, {"provider": provider}, c)[1], text, secrets)


@FUZZ_SMALL
@given(form_bodies | raw_forms)
def test_random_form_bodies(text):
    check_all(text)


@FUZZ_SMALL
@given(csv_texts)
def test_random_csv(text):
    check_all(text)


@FUZZ_SMALL
@given(
    st.text(max_size=200),
    st.dictionaries(
        st.sampled_from(["provider", "x"]), st.sampled_from(sorted(OWN_PARSERS)) | st.text(max_size=10)
    ),
)
def test_parse_payload_with_random_attributes(text, attributes):
    if attributes.get("provider", "").strip() == "inbound_email":
        return
    try:
        provider, leads = parse_payload(text, attributes, CONFIG)
    except ParseError:
        return
    assert provider in PARSERS and all(isinstance(lead, RawLead) for lead in leads)
