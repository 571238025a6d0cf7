"""Provider parsers, provider detection and the synthetic renderers (no Beam)."""

from __future__ import annotations

import json
import random
import urllib.parse
from datetime import UTC, datetime

import phonenumbers
import pytest

from pipelines.synthetic import leads as synthetic
from pipelines.synthetic.leads import Person, make_external_id, random_person, render
from transforms.parsers import (
    api,
    csv_upload,
    google_ads_lead_form,
    knowlarity_call,
    meta_lead_ads,
    twilio,
)
from transforms.parsers.base import ParseConfig, ParseError, ParseLimits, RawLead
from transforms.parsers.registry import PARSERS, detect_provider, parse_payload
from transforms.sources import SourceRegistry

REGISTRY = SourceRegistry.from_csv()
CONFIG = ParseConfig(REGISTRY)
GOOGLE_KEY = "s3cret-form-key"
KEYED = ParseConfig(REGISTRY, google_ads_key=GOOGLE_KEY)
PHONE, EMAIL, NAME = "+14155550123", "jane.doe@example.com", "Jane Doe"
UTC = UTC


def parse_error(parser, text: str, config: ParseConfig = CONFIG) -> ParseError:
    with pytest.raises(ParseError) as info:
        parser(text, {}, config)
    err = info.value
    for secret in (PHONE, EMAIL, NAME, "4155550123", "jane"):
        assert secret not in err.message, f"PII in error message: {err.message}"
    return err


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------

META_LEAD = {
    "id": "1234567890123456",
    "created_time": "2026-11-20T14:03:22+0000",
    "ad_id": "23851234567890123",
    "adset_id": "23851234567890124",
    "campaign_id": "23851234567890125",
    "form_id": "987654321098765",
    "is_organic": False,
    "platform": "ig",
    "field_data": [
        {"name": "full_name", "values": [" Jane Doe "]},
        {"name": "phone_number", "values": [PHONE]},
        {"name": "email", "values": [EMAIL]},
        {"name": "city", "values": ["San Francisco"]},
        {"name": "state", "values": ["CA"]},
        {"name": "zip_code", "values": ["94105"]},
        {"name": "country", "values": ["US"]},
        {"name": "street_address", "values": ["1 Market St"]},
        {"name": "what_is_your_budget?", "values": ["500k-750k"]},
        {"name": "preferred_areas", "values": ["SoMa", "Mission"]},
        {"name": "any_questions_or_comments?", "values": ["Call after 5pm"]},
    ],
}
META_WEBHOOK = {
    "object": "page",
    "entry": [
        {
            "id": "1",
            "time": 1794830602,
            "changes": [
                {
                    "field": "leadgen",
                    "value": {
                        "leadgen_id": "1234567890123456",
                        "form_id": "987654321098765",
                        "page_id": "1",
                        "created_time": 1794830602,
                    },
                }
            ],
        }
    ],
}
GOOGLE_LEAD = {
    "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz",
    "api_version": "1.0",
    "form_id": 40000000000,
    "campaign_id": 12345678901,
    "adgroup_id": 123456789012,
    "creative_id": 612345678901,
    "gcl_id": "Cj0KCQiA-TeSter",
    "google_key": GOOGLE_KEY,
    "is_test": False,
    "user_column_data": [
        {"column_name": "Full Name", "string_value": NAME, "column_id": "FULL_NAME"},
        {"column_name": "User Phone", "string_value": PHONE, "column_id": "PHONE_NUMBER"},
        {"column_name": "User Email", "string_value": EMAIL, "column_id": "EMAIL"},
        {"column_name": "Postal Code", "string_value": "94105", "column_id": "POSTAL_CODE"},
        {"column_name": "City", "string_value": "San Francisco", "column_id": "CITY"},
        {"column_name": "Region", "string_value": "California", "column_id": "REGION"},
        {"column_name": "Country", "string_value": "US", "column_id": "COUNTRY"},
        {"column_name": "Job title", "string_value": "Engineer", "column_id": "JOB_TITLE"},
        {"string_value": "2 bedrooms", "column_id": "HOW_MANY_BEDROOMS?"},
    ],
}
KNOWLARITY_CALL = {
    "uuid": "6f1c2a4e-2b7d-4c1e-9a51-0f3e5d7c9b21",
    "customer_number": "+919876543210",
    "start_time": "2026-11-20 19:33:22+05:30",
    "call_duration": 42,
    "agent_number": "+918041234567",
    "knowlarity_number": "+918069012345",
    "call_type": "incoming",
    "Call_Status": "Connected",
}
TWILIO_SMS = {
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM0123456789abcdef0123456789abcdef",
    "NumMedia": "0",
    "ToCity": "",
    "FromZip": "94105",
    "SmsSid": "SM0123456789abcdef0123456789abcdef",
    "FromState": "CA",
    "SmsStatus": "received",
    "FromCity": "SAN FRANCISCO",
    "Body": "Is the 2BR on Main St still available?",
    "FromCountry": "US",
    "To": "+14155550199",
    "ToZip": "",
    "NumSegments": "1",
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": PHONE,
    "ApiVersion": "2010-04-01",
}
TWILIO_VOICE = {
    "Called": "+14155550199",
    "ToState": "CA",
    "CallerCountry": "US",
    "Direction": "inbound",
    "CallerState": "CA",
    "ToZip": "",
    "CallSid": "CA0123456789abcdef0123456789abcdef",
    "To": "+14155550199",
    "CallerZip": "94105",
    "ToCountry": "US",
    "ApiVersion": "2010-04-01",
    "CallStatus": "ringing",
    "From": PHONE,
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "FromCountry": "US",
    "FromCity": "SAN FRANCISCO",
    "FromState": "CA",
    "FromZip": "94105",
    "Caller": PHONE,
}
API_LEAD = {
    "external_id": "web-000123",
    "full_name": NAME,
    "phone": PHONE,
    "email": EMAIL,
    "country": "US",
    "postal_code": "94105",
    "city": "San Francisco",
    "state": "CA",
    "message": "Looking for a 2 bedroom condo",
    "property_address": "1 Market St, San Francisco",
    "created_at": "2026-11-20T14:03:22Z",
    "source": "landing-page/open-house",
    "is_test": False,
}
CSV_UPLOAD = (
    "\ufeffLead ID,Full Name,Phone Number,E-mail Address,ZIP,City,State,Notes,Created At,Agent\r\n"
    f"L-1,{NAME},(415) 555-0123,{EMAIL},94105,San Francisco,CA,"
    '"Wants a call,\nafter 5pm",2026-11-20T14:03:22Z,Bob\r\n'
    ",,,,,,,,,\r\n"
    "L-3,John Roe,+447911123456,,SW1A 1AA,London,,,not a date,Amy\r\n"
)


def js(obj) -> str:
    return json.dumps(obj)


def form(fields: dict[str, str]) -> str:
    return urllib.parse.urlencode(fields)


# --------------------------------------------------------------------------------------
# meta_lead_ads
# --------------------------------------------------------------------------------------


def test_meta_lead_object():
    [lead] = meta_lead_ads.parse(js(META_LEAD), {}, CONFIG)
    assert lead.provider == "meta_lead_ads"
    assert lead.external_id == "1234567890123456"
    assert lead.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert (lead.full_name, lead.phone, lead.email) == (NAME, PHONE, EMAIL)
    assert (lead.city, lead.state, lead.postal_code, lead.country) == ("San Francisco", "CA", "94105", "US")
    assert lead.property_address == "1 Market St"
    assert lead.message == "Call after 5pm"
    assert (lead.campaign_id, lead.form_id, lead.ad_id) == (
        "23851234567890125",
        "987654321098765",
        "23851234567890123",
    )
    assert lead.extra["what_is_your_budget?"] == "500k-750k"
    assert lead.extra["preferred_areas"] == "SoMa, Mission"
    assert lead.extra["platform"] == "ig" and lead.extra["is_organic"] == "false"
    assert lead.source_id is None and not lead.is_test


def test_meta_first_last_names_aliases_and_offsets():
    payload = {
        **META_LEAD,
        "created_time": "2026-11-20T09:03:22-0500",
        "field_data": [
            {"name": "First Name", "values": ["Jane"]},
            {"name": "last_name", "values": ["Doe"]},
            {"name": "phone", "values": [PHONE]},
            {"name": "post_code", "values": ["SW1A 1AA"]},
            {"name": "message", "values": []},
            {"name": "empty", "values": [""]},
        ],
    }
    [lead] = meta_lead_ads.parse(js(payload), {}, CONFIG)
    assert (lead.first_name, lead.last_name, lead.full_name) == ("Jane", "Doe", None)
    assert lead.postal_code == "SW1A 1AA" and lead.message is None
    assert lead.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert "empty" not in lead.extra


def test_meta_unix_created_time_and_missing_created_time():
    [lead] = meta_lead_ads.parse(js({**META_LEAD, "created_time": 1794830602}), {}, CONFIG)
    assert lead.event_time == datetime.fromtimestamp(1794830602, tz=UTC)
    no_time = {k: v for k, v in META_LEAD.items() if k != "created_time"}
    assert meta_lead_ads.parse(js(no_time), {}, CONFIG)[0].event_time is None


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        (META_WEBHOOK, "unsupported_meta_webhook"),
        ({k: v for k, v in META_LEAD.items() if k != "id"}, "missing_field"),
        ({**META_LEAD, "id": "  "}, "missing_field"),
        ({**META_LEAD, "id": {"x": 1}}, "invalid_field"),
        ({k: v for k, v in META_LEAD.items() if k != "field_data"}, "missing_field"),
        ({**META_LEAD, "field_data": {"full_name": NAME}}, "invalid_field"),
        ({**META_LEAD, "field_data": [{"values": [PHONE]}]}, "invalid_field"),
        ({**META_LEAD, "field_data": [{"name": "phone", "values": [{"v": PHONE}]}]}, "invalid_field"),
        ({**META_LEAD, "created_time": "20/11/2026"}, "invalid_timestamp"),
        ({**META_LEAD, "created_time": "0001-01-01T00:00:00+0500"}, "invalid_timestamp"),
    ],
)
def test_meta_errors(payload, error_type):
    assert parse_error(meta_lead_ads.parse, js(payload)).error_type == error_type


def test_meta_webhook_message_says_fetch_from_graph_api():
    assert "Graph API" in parse_error(meta_lead_ads.parse, js(META_WEBHOOK)).message


@pytest.mark.parametrize(
    ("text", "error_type"),
    [
        ("", "invalid_json"),
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ("[" * 100, "json_too_deep"),
    ],
)
def test_json_parsers_reject_non_objects(text, error_type):
    for parser in (meta_lead_ads.parse, google_ads_lead_form.parse, knowlarity_call.parse, api.parse):
        assert parse_error(parser, text).error_type == error_type


# --------------------------------------------------------------------------------------
# google_ads_lead_form
# --------------------------------------------------------------------------------------


def test_google_lead():
    [lead] = google_ads_lead_form.parse(js(GOOGLE_LEAD), {}, KEYED)
    assert lead.provider == "google_ads_lead_form"
    assert lead.external_id == GOOGLE_LEAD["lead_id"]
    assert lead.event_time is None and not lead.is_test
    assert (lead.full_name, lead.phone, lead.email) == (NAME, PHONE, EMAIL)
    assert (lead.postal_code, lead.city, lead.state, lead.country) == (
        "94105",
        "San Francisco",
        "California",
        "US",
    )
    assert (lead.campaign_id, lead.form_id, lead.ad_id) == ("12345678901", "40000000000", "612345678901")
    assert lead.extra["Job title"] == "Engineer"
    assert lead.extra["HOW_MANY_BEDROOMS?"] == "2 bedrooms"
    assert lead.extra["adgroup_id"] == "123456789012" and lead.extra["gcl_id"] == "Cj0KCQiA-TeSter"
    assert lead.message is None


def test_google_is_test_and_no_key_configured():
    payload = {**GOOGLE_LEAD, "is_test": True, "google_key": "anything"}
    [lead] = google_ads_lead_form.parse(js(payload), {}, CONFIG)
    assert lead.is_test


def test_google_work_contact_fallback_and_question_message():
    payload = {
        **GOOGLE_LEAD,
        "user_column_data": [
            {"column_name": "Work email", "string_value": EMAIL, "column_id": "WORK_EMAIL"},
            {"column_name": "Work phone", "string_value": PHONE, "column_id": "WORK_PHONE"},
            {"column_name": "Any questions?", "string_value": "Pets allowed?", "column_id": "ANY_QUESTIONS?"},
        ],
    }
    [lead] = google_ads_lead_form.parse(js(payload), {}, KEYED)
    assert (lead.email, lead.phone, lead.message) == (EMAIL, PHONE, "Pets allowed?")
    assert lead.extra["Work email"] == EMAIL


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        ({**GOOGLE_LEAD, "google_key": "wrong"}, "invalid_google_key"),
        ({k: v for k, v in GOOGLE_LEAD.items() if k != "google_key"}, "invalid_google_key"),
        ({**GOOGLE_LEAD, "google_key": 12}, "invalid_google_key"),
        ({k: v for k, v in GOOGLE_LEAD.items() if k != "lead_id"}, "missing_field"),
        ({**GOOGLE_LEAD, "lead_id": ["x"]}, "invalid_field"),
        ({k: v for k, v in GOOGLE_LEAD.items() if k != "user_column_data"}, "missing_field"),
        ({**GOOGLE_LEAD, "user_column_data": "FULL_NAME"}, "invalid_field"),
        ({**GOOGLE_LEAD, "user_column_data": [PHONE]}, "invalid_field"),
        ({**GOOGLE_LEAD, "user_column_data": [{"column_id": 5, "string_value": PHONE}]}, "invalid_field"),
    ],
)
def test_google_errors(payload, error_type):
    assert parse_error(google_ads_lead_form.parse, js(payload), KEYED).error_type == error_type


# --------------------------------------------------------------------------------------
# knowlarity_call
# --------------------------------------------------------------------------------------


def test_knowlarity_call():
    [lead] = knowlarity_call.parse(js(KNOWLARITY_CALL), {}, CONFIG)
    assert lead.provider == "knowlarity_call"
    assert lead.external_id == KNOWLARITY_CALL["uuid"]
    assert lead.phone == "+919876543210" and lead.country is None
    assert lead.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert lead.extra == {
        "call_duration": "42",
        "agent_number": "+918041234567",
        "knowlarity_number": "+918069012345",
        "call_type": "incoming",
        "call_status": "Connected",
    }


def test_knowlarity_naive_time_is_ist_and_caller_id_fallback():
    payload = {k: v for k, v in KNOWLARITY_CALL.items() if k != "customer_number"}
    payload.update(caller_id=9876543210, start_time="2026-11-20 19:33:22", call_duration="17")
    [lead] = knowlarity_call.parse(js(payload), {}, CONFIG)
    assert lead.phone == "9876543210"
    assert lead.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert lead.extra["call_duration"] == "17"


def test_knowlarity_without_uuid_or_time():
    [lead] = knowlarity_call.parse(js({"customer_number": "+919876543210", "start_time": ""}), {}, CONFIG)
    assert lead.external_id is None and lead.event_time is None


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        ({k: v for k, v in KNOWLARITY_CALL.items() if k != "customer_number"}, "missing_contact"),
        ({**KNOWLARITY_CALL, "customer_number": " "}, "missing_contact"),
        ({**KNOWLARITY_CALL, "customer_number": ["+919876543210"]}, "missing_contact"),
        ({**KNOWLARITY_CALL, "start_time": "yesterday"}, "invalid_timestamp"),
    ],
)
def test_knowlarity_errors(payload, error_type):
    assert parse_error(knowlarity_call.parse, js(payload)).error_type == error_type


# --------------------------------------------------------------------------------------
# twilio_sms / twilio_voice
# --------------------------------------------------------------------------------------


def test_twilio_sms():
    [lead] = twilio.parse_sms(form(TWILIO_SMS), {}, CONFIG)
    assert lead.provider == "twilio_sms"
    assert lead.external_id == "SM0123456789abcdef0123456789abcdef"
    assert lead.phone == PHONE and lead.event_time is None
    assert lead.message == "Is the 2BR on Main St still available?"
    assert (lead.country, lead.state, lead.city, lead.postal_code) == ("US", "CA", "SAN FRANCISCO", "94105")
    assert lead.extra["to"] == "+14155550199" and lead.extra["sms_status"] == "received"


def test_twilio_sms_smssid_fallback_and_blank_location():
    fields = {k: v for k, v in TWILIO_SMS.items() if k != "MessageSid"}
    fields.update(FromCity="", FromZip="", Body="")
    [lead] = twilio.parse_sms(form(fields), {}, CONFIG)
    assert lead.external_id == TWILIO_SMS["SmsSid"]
    assert lead.city is None and lead.postal_code is None and lead.message is None


def test_twilio_voice():
    [lead] = twilio.parse_voice(form(TWILIO_VOICE) + "\n", {}, CONFIG)
    assert lead.provider == "twilio_voice"
    assert lead.external_id == "CA0123456789abcdef0123456789abcdef"
    assert lead.phone == PHONE and lead.message is None and lead.event_time is None
    assert (lead.country, lead.state, lead.city, lead.postal_code) == ("US", "CA", "SAN FRANCISCO", "94105")
    assert lead.extra["call_status"] == "ringing" and lead.extra["direction"] == "inbound"


@pytest.mark.parametrize(
    ("parser", "text", "error_type"),
    [
        (
            twilio.parse_sms,
            form({k: v for k, v in TWILIO_SMS.items() if "Sid" not in k or k == "AccountSid"}),
            "missing_field",
        ),
        (twilio.parse_sms, form(TWILIO_VOICE), "missing_field"),
        (twilio.parse_voice, form(TWILIO_SMS), "missing_field"),
        (twilio.parse_sms, form({**TWILIO_SMS, "From": ""}), "missing_contact"),
        (twilio.parse_voice, form({k: v for k, v in TWILIO_VOICE.items() if k != "From"}), "missing_contact"),
        (twilio.parse_sms, js(TWILIO_SMS), "invalid_form"),
        (twilio.parse_voice, "", "invalid_form"),
        (twilio.parse_sms, "just some text", "invalid_form"),
        (twilio.parse_sms, "From=a\nMessageSid=b", "invalid_form"),
        (twilio.parse_sms, "&".join(f"k{i}=v" for i in range(1001)), "form_too_many_fields"),
    ],
)
def test_twilio_errors(parser, text, error_type):
    assert parse_error(parser, text).error_type == error_type


# --------------------------------------------------------------------------------------
# api
# --------------------------------------------------------------------------------------


def test_api_lead():
    [lead] = api.parse(js(API_LEAD), {}, CONFIG)
    assert lead.provider == "api" and lead.external_id == "web-000123"
    assert lead.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert (lead.full_name, lead.phone, lead.email, lead.country) == (NAME, PHONE, EMAIL, "US")
    assert lead.property_address == "1 Market St, San Francisco"
    assert lead.extra == {"source": "landing-page/open-house"} and not lead.is_test


def test_api_minimal_and_test_lead():
    [lead] = api.parse(js({"external_id": "x1", "email": EMAIL, "phone": None, "is_test": True}), {}, CONFIG)
    assert lead.email == EMAIL and lead.phone is None and lead.event_time is None and lead.is_test


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({**API_LEAD, "phone": 4155550123}, ["phone: expected string or null"]),
        ({**API_LEAD, "country": "USA"}, ["country: does not match ^[A-Za-z]{2}$"]),
        ({**API_LEAD, "fone": PHONE}, ["(root): unknown field 'fone'"]),
        ({**API_LEAD, "created_at": "2026-11-20 14:03"}, ["created_at: not a valid date-time"]),
        ({**API_LEAD, "created_at": "2026-13-20T14:03:22Z"}, ["created_at: not a valid date-time"]),
        ({**API_LEAD, "external_id": ""}, ["external_id: must not be empty"]),
        ({**API_LEAD, "external_id": "  "}, ["external_id: must not be blank"]),
        ({**API_LEAD, "postal_code": "9" * 21}, ["postal_code: longer than 20 characters"]),
        ({**API_LEAD, "is_test": "yes"}, ["is_test: expected boolean or null"]),
        ({k: v for k, v in API_LEAD.items() if k != "external_id"}, ["external_id: required"]),
        ({"external_id": "x", "phone": " ", "email": None}, ["phone or email: at least one is required"]),
        ({"external_id": "x"}, ["phone or email: at least one is required"]),
    ],
)
def test_api_validation_errors(payload, expected):
    err = parse_error(api.parse, js(payload))
    assert err.error_type == "validation_error"
    assert err.message.split("; ") == expected


def test_api_lists_every_problem_without_values():
    payload = {"external_id": 7, "email": 12345, "phone": [PHONE], "country": "U$", "nickname": "x"}
    err = parse_error(api.parse, js(payload))
    assert err.message.split("; ") == [
        "(root): unknown field 'nickname'",
        "country: does not match ^[A-Za-z]{2}$",
        "email: expected string or null",
        "external_id: expected string",
        "phone: expected string or null",
        "phone or email: at least one is required",
    ]
    assert "12345" not in err.message and "U$" not in err.message


def test_api_caps_reported_problems():
    payload = {"external_id": "x", "email": EMAIL, **{f"field{i}": 1 for i in range(30)}}
    message = parse_error(api.parse, js(payload)).message
    assert message.count("unknown field") == api.MAX_REPORTED_PROBLEMS and message.endswith("and 10 more")


def test_api_out_of_range_created_at():
    err = parse_error(api.parse, js({**API_LEAD, "created_at": "0001-01-01T00:00:00+05:00"}))
    assert err.error_type == "invalid_timestamp"


# --------------------------------------------------------------------------------------
# csv_upload
# --------------------------------------------------------------------------------------


def test_csv_upload_rows():
    first, second = csv_upload.parse(CSV_UPLOAD, {}, CONFIG)
    assert first.provider == second.provider == "csv_upload"
    assert (first.unit_index, second.unit_index) == (1, 3)  # the blank record 2 is skipped
    assert (first.external_id, first.full_name, first.phone, first.email) == (
        "L-1",
        NAME,
        "(415) 555-0123",
        EMAIL,
    )
    assert (first.postal_code, first.city, first.state) == ("94105", "San Francisco", "CA")
    assert first.message == "Wants a call,\nafter 5pm"
    assert first.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert first.extra == {"Agent": "Bob"}
    assert (second.external_id, second.phone, second.email, second.state) == (
        "L-3",
        "+447911123456",
        None,
        None,
    )
    assert second.event_time is None and second.extra == {"Agent": "Amy", "invalid_created_at": "true"}


def test_csv_header_aliases():
    for header in ("Mobile", "phone_number", "TELEPHONE", "Phone No."):
        [lead] = csv_upload.parse(f"{header},Name\n{PHONE},{NAME}\n", {}, CONFIG)
        assert lead.phone == PHONE and lead.full_name == NAME
    [lead] = csv_upload.parse(f"first name,Last_Name,email\nJane,Doe,{EMAIL}", {}, CONFIG)
    assert (lead.first_name, lead.last_name, lead.email, lead.external_id) == ("Jane", "Doe", EMAIL, None)


def test_csv_the_exports_people_upload():
    # a Meta lead ads export (Ads Manager / Leads Center "Download": the lead's field names, with Meta's "p:" before
    # the phone number) and a HubSpot contacts export (its property labels)
    meta = ("id,created_time,ad_id,ad_name,adset_id,adset_name,campaign_id,campaign_name,form_id,form_name,"
            "is_organic,platform,full_name,phone_number,email\n"
            f"l:1066791171,2026-11-20T14:03:22+0000,ag:120,Ad 1,as:121,Set 1,c:122,Fall,f:123,Form 1,false,fb,"
            f"{NAME},p:+14155550123,{EMAIL}\n")
    [lead] = csv_upload.parse(meta, {}, CONFIG)
    assert (lead.external_id, lead.full_name, lead.phone, lead.email) == ("l:1066791171", NAME, "p:+14155550123",
                                                                          EMAIL)
    assert (lead.campaign_id, lead.form_id, lead.ad_id) == ("c:122", "f:123", "ag:120")
    assert lead.event_time == datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)
    assert {"ad_name", "form_name", "platform"} <= set(lead.extra)
    hubspot = ("Record ID,First Name,Last Name,Email,Mobile Phone Number,City,State/Region,Country/Region,"
               "Create Date\n"
               f"51,Jane,Doe,{EMAIL},{PHONE},Austin,TX,United States,2026-11-20 14:03\n")
    [lead] = csv_upload.parse(hubspot, {}, CONFIG)
    assert (lead.external_id, lead.first_name, lead.email, lead.phone) == ("51", "Jane", EMAIL, PHONE)
    assert (lead.city, lead.state, lead.country) == ("Austin", "TX", "United States")
    assert lead.event_time is not None and not lead.extra


def test_csv_ragged_rows_and_naive_times():
    text = f"phone,email,created\n{PHONE},{EMAIL},2026-11-20 14:03:22,extra-cell\n{PHONE}\n"
    long_row, short_row = csv_upload.parse(text, {}, ParseConfig(REGISTRY, naive_timezone="America/New_York"))
    assert long_row.extra == {"cell_count_mismatch": "true"} and long_row.email == EMAIL
    assert long_row.event_time == datetime(2026, 11, 20, 19, 3, 22, tzinfo=UTC)
    assert short_row.extra == {"cell_count_mismatch": "true"} and short_row.email is None


@pytest.mark.parametrize(
    ("text", "error_type"),
    [
        ("", "empty_csv"),
        ("\n \n", "empty_csv"),
        ("name,phone,email\n", "empty_csv"),
        ("name,phone,email\n,,\n  ,,\n", "empty_csv"),
        ("name,city\nJane Doe,Boston\n", "invalid_csv"),
        (f"{NAME},{PHONE}\n{NAME},{PHONE}\n", "invalid_csv"),
        ('phone,notes\n1,"' + "x" * 200_000 + '"\n', "invalid_csv"),
    ],
)
def test_csv_errors(text, error_type):
    assert parse_error(csv_upload.parse, text).error_type == error_type


def test_csv_too_many_rows():
    config = ParseConfig(REGISTRY, limits=ParseLimits(max_csv_rows=3))
    assert len(csv_upload.parse("phone\n1\n2\n3\n", {}, config)) == 3
    with pytest.raises(ParseError) as e:
        csv_upload.parse("phone\n1\n2\n3\n4\n", {}, config)
    assert e.value.error_type == "csv_too_many_rows"


# --------------------------------------------------------------------------------------
# registry: detection and dispatch
# --------------------------------------------------------------------------------------

EMAIL_TEXT = (
    "Received: from mail.zillow.com by mx.example.com\r\n"
    "From: Zillow <leads@mail.zillow.com>\r\n"
    "To: zillow@leads.example.com\r\n"
    "Subject: New lead\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Name: Jane Doe\r\n"
)


@pytest.mark.parametrize(
    ("text", "provider"),
    [
        (js(META_LEAD), "meta_lead_ads"),
        ("  \n" + js(META_WEBHOOK), "meta_lead_ads"),
        (js(GOOGLE_LEAD), "google_ads_lead_form"),
        (js(KNOWLARITY_CALL), "knowlarity_call"),
        (js({"uuid": "x", "caller_id": "1"}), "knowlarity_call"),
        (js(API_LEAD), "api"),
        (form(TWILIO_SMS), "twilio_sms"),
        (form({"SmsSid": "SM1", "From": PHONE}), "twilio_sms"),
        (form(TWILIO_VOICE), "twilio_voice"),
        (EMAIL_TEXT, "inbound_email"),
        ("From nobody Mon Nov 20 14:03:22 2026\nFrom: a@b.c\nSubject: x\n\nbody", "inbound_email"),
        (CSV_UPLOAD, "csv_upload"),
        ("Mobile\n" + PHONE, "csv_upload"),
    ],
)
def test_detect_provider(text, provider):
    assert detect_provider(text) == provider


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{",
        "[]",
        js({"id": "1"}),
        js({"uuid": "x"}),
        "MessageSid",
        "From: a@b.c\n\nbody",
        "Subject: hi\nFrom x\n\n",
        "name,phone\n",
        "name,city\nJane,Boston\n",
        "hello world",
        "a=1&b=2",
        "MessageSid=SM1\nFrom=x",
        '{"external_id": 1',
        "\x00\x01",
    ],
)
def test_detect_provider_unknown(text):
    assert detect_provider(text) is None


def test_parse_payload_uses_attribute_then_detection():
    provider, leads = parse_payload(js(API_LEAD), {"provider": "api"}, CONFIG)
    assert provider == "api" and leads[0].external_id == "web-000123"
    provider, leads = parse_payload(form(TWILIO_VOICE), {}, CONFIG)
    assert provider == "twilio_voice" and len(leads) == 1
    # The attribute wins over the shape: an API body announced as Meta is parsed (and rejected) as Meta.
    with pytest.raises(ParseError) as info:
        parse_payload(js(API_LEAD), {"provider": "meta_lead_ads"}, CONFIG)
    assert info.value.error_type == "missing_field"


def test_parse_payload_errors():
    with pytest.raises(ParseError) as info:
        parse_payload(js(API_LEAD), {"provider": "myspace"}, CONFIG)
    assert info.value.error_type == "unknown_provider" and "myspace" in info.value.message
    with pytest.raises(ParseError) as info:
        parse_payload("hello", {"other": "x"}, CONFIG)
    assert info.value.error_type == "unidentified_payload"


def test_registry_covers_every_provider_in_the_source_registry():
    assert {s.provider for s in REGISTRY.sources.values()} == set(PARSERS)


def test_inbound_email_is_detected_and_dispatched():
    provider, leads = parse_payload(EMAIL_TEXT, {}, CONFIG)
    assert provider == "inbound_email" and all(isinstance(lead, RawLead) for lead in leads)


# --------------------------------------------------------------------------------------
# synthetic renderers: round trip and data quality
# --------------------------------------------------------------------------------------

EVENT_TIME = datetime(2026, 11, 20, 14, 3, 22, tzinfo=UTC)


def _e164(raw: str, country: str) -> str:
    return phonenumbers.format_number(phonenumbers.parse(raw, country), phonenumbers.PhoneNumberFormat.E164)


def _assert_matches(lead: RawLead, person: Person, provider: str) -> None:
    assert _e164(lead.phone, person.country) == person.phone
    if provider in ("knowlarity_call", "twilio_voice"):
        return
    if provider != "twilio_sms":
        assert lead.email == person.email
        assert lead.full_name == person.full_name or (lead.first_name, lead.last_name) == (
            person.first_name,
            person.last_name,
        )
        assert lead.postal_code == person.postal_code and lead.city == person.city
        if person.message:
            assert lead.message == person.message
    elif person.message:
        assert lead.message == person.message
    if provider == "twilio_sms" and person.country == "US":
        assert (lead.city, lead.postal_code, lead.state) == (
            person.city.upper(),
            person.postal_code,
            person.state,
        )


@pytest.mark.parametrize("provider", synthetic.PROVIDERS)
@pytest.mark.parametrize("seed", range(8))
def test_render_round_trip(provider, seed):
    rng = random.Random(seed)
    person = random_person(rng, country=("US", "GB", "IN")[seed % 3])
    external_id = make_external_id(provider, rng)
    text, attributes = render(provider, person, external_id=external_id, event_time=EVENT_TIME, rng=rng)
    assert attributes["provider"] == provider
    config = ParseConfig(REGISTRY, google_ads_key=synthetic.SYNTHETIC_GOOGLE_KEY)
    assert detect_provider(text) == provider
    parsed_provider, [lead] = parse_payload(text, attributes, config)
    assert parsed_provider == lead.provider == provider
    assert lead.external_id == external_id
    if provider not in ("google_ads_lead_form", "twilio_sms", "twilio_voice"):
        assert lead.event_time == EVENT_TIME
    _assert_matches(lead, person, provider)


def test_render_csv_many_persons():
    rng = random.Random(7)
    persons = [random_person(rng) for _ in range(5)]
    text, attributes = render(
        "csv_upload", persons[0], external_id="up-1", event_time=EVENT_TIME, rng=rng, persons=persons
    )
    provider, leads = parse_payload(text, attributes, CONFIG)
    assert provider == "csv_upload" and [lead.unit_index for lead in leads] == [1, 2, 3, 4, 5]
    assert [lead.external_id for lead in leads] == [f"up-1-{i}" for i in range(1, 6)]
    for lead, person in zip(leads, persons, strict=True):
        _assert_matches(lead, person, "csv_upload")


def test_render_google_options():
    rng = random.Random(3)
    text, _ = render(
        "google_ads_lead_form",
        random_person(rng),
        external_id="g1",
        event_time=EVENT_TIME,
        rng=rng,
        google_key=GOOGLE_KEY,
        is_test=True,
    )
    [lead] = google_ads_lead_form.parse(text, {}, KEYED)
    assert lead.is_test


def test_renderers_are_deterministic():
    def batch(seed: int) -> list[tuple[str, dict[str, str]]]:
        rng = random.Random(seed)
        return [
            render(
                p, random_person(rng), external_id=make_external_id(p, rng), event_time=EVENT_TIME, rng=rng
            )
            for p in synthetic.PROVIDERS
        ]

    assert batch(11) == batch(11)
    assert batch(11) != batch(12)
    with pytest.raises(ValueError):
        render(
            "inbound_email",
            random_person(random.Random(1)),
            external_id="x",
            event_time=EVENT_TIME,
            rng=random.Random(1),
        )


def test_random_people_are_valid_and_varied():
    import email_validator
    import zipcodes

    rng = random.Random(2026)
    people = [random_person(rng) for _ in range(300)]
    assert {p.country for p in people} == {"US", "GB", "IN"}
    assert len({p.phone for p in people}) == len(people)
    for p in people:
        number = phonenumbers.parse(p.phone)
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) == p.country
        email_validator.validate_email(p.email, check_deliverability=False)
        assert p.full_name == f"{p.first_name} {p.last_name}"
        if p.country == "US":
            [match] = zipcodes.matching(p.postal_code)
            assert (match["city"], match["state"]) == (p.city, p.state)
