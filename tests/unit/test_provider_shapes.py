"""Provider shapes beyond the everyday ones, each built from the provider's documentation (sources in
tests/data/fixtures/providers/SOURCES.md): older and newer Google Ads webhook versions, Meta's work-contact
questions, Twilio's WhatsApp and MMS variants, Knowlarity's Indian number formats, and the spreadsheet files people
upload (Meta's UTF-16 TSV lead download, semicolon CSV)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.uploads import upload_csv
from transforms.normalize import Unit, normalize_unit
from transforms.parsers import csv_upload, google_ads_lead_form, knowlarity_call, meta_lead_ads, twilio
from transforms.parsers.base import ParseConfig
from transforms.sources import SourceRegistry

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "providers"
CONFIG = ParseConfig(SourceRegistry.from_csv())
T0 = datetime(2026, 12, 3, tzinfo=UTC)


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def normalized(raw):
    return normalize_unit(Unit("m1", "m1", T0, {"provider": raw.provider}, b"{}", raw.provider, True, raw))


def test_google_ads_older_payload_names_columns_only():
    [lead] = google_ads_lead_form.parse(text("google_ads_column_names_only.json"), {}, CONFIG)
    assert (lead.full_name, lead.phone, lead.email, lead.postal_code) == (
        "Test Person", "+16505550123", "test.person@example.com", "94043")
    assert lead.extra["What is your preferred dealership?"] == "Mountain View"
    assert lead.is_test and lead.event_time is None


def test_google_ads_newer_payload_submit_time_and_performance_max():
    [lead] = google_ads_lead_form.parse(text("google_ads_pmax_submit_time.json"), {}, CONFIG)
    assert lead.event_time == datetime(2026, 9, 26, 12, 30, tzinfo=UTC)
    assert (lead.first_name, lead.last_name, lead.state, lead.country) == ("Test", "Person", "California", "US")
    assert lead.email == "test.person@example.com"  # WORK_EMAIL stands in for the missing EMAIL
    assert lead.extra["asset_group_id"] == "60000000001" and lead.extra["lead_stage"] == "new"
    assert lead.extra["Company name"] == "Example Co" and lead.extra["Job title"] == "Buyer"


def test_google_ads_api_enum_names_for_names():
    payload = json.loads(text("google_ads_pmax_submit_time.json"))
    for column in payload["user_column_data"]:
        column["column_id"] = {"FIRST_NAME": "GIVEN_NAME", "LAST_NAME": "FAMILY_NAME"}.get(column["column_id"],
                                                                                          column["column_id"])
    [lead] = google_ads_lead_form.parse(json.dumps(payload), {}, CONFIG)
    assert (lead.first_name, lead.last_name) == ("Test", "Person")


def test_meta_work_contact_questions_stand_in_for_email_and_phone():
    [lead] = meta_lead_ads.parse(text("meta_lead_work_contact.json"), {}, CONFIG)
    assert (lead.first_name, lead.last_name, lead.email, lead.phone, lead.postal_code) == (
        "Test", "Person", "test.person@example.com", "+14155550123", "94105")
    assert lead.extra["job_title"] == "Buyer" and lead.extra["date_of_birth"] == "1990-01-31"
    assert lead.extra["which_neighbourhoods_interest_you?"] == "Mission, SoMa"
    assert lead.extra["platform"] == "ig"
    both = json.loads(text("meta_lead_work_contact.json"))
    both["field_data"].append({"name": "email", "values": ["home@example.com"]})
    [lead] = meta_lead_ads.parse(json.dumps(both), {}, CONFIG)
    assert lead.email == "home@example.com" and lead.extra["work_email"] == "test.person@example.com"


def test_twilio_whatsapp_message():
    [lead] = twilio.parse_sms(text("twilio_whatsapp.form"), {}, CONFIG)
    assert lead.phone == "+14155550123" and normalized(lead).phone_e164 == "+14155550123"
    assert lead.full_name == "Test Person" and lead.message == "Is this house still for sale?"
    assert lead.extra["to"] == "+14155238886" and lead.extra["wa_id"] == "14155550123"
    assert lead.extra["media_url_0"].startswith("https://api.twilio.com/")
    assert lead.extra["media_type_0"] == "image/jpeg"


def test_twilio_mms_keeps_every_media_item():
    [lead] = twilio.parse_sms(text("twilio_mms.form"), {}, CONFIG)
    assert [lead.extra[f"media_type_{i}"] for i in range(2)] == ["image/jpeg", "image/png"]
    assert lead.extra["num_media"] == "2" and "media_url_2" not in lead.extra
    assert lead.full_name is None


def test_twilio_opt_out_and_forwarded_call():
    sms = urllib.parse.urlencode({"MessageSid": "SM1", "From": "+14155550123", "Body": "STOP", "OptOutType": "STOP"})
    [lead] = twilio.parse_sms(sms, {}, CONFIG)
    assert lead.extra["opt_out_type"] == "STOP"
    call = urllib.parse.urlencode({"CallSid": "CA1", "From": "+14155550123", "ForwardedFrom": "+14155550100"})
    [lead] = twilio.parse_voice(call, {}, CONFIG)
    assert lead.extra["forwarded_from"] == "+14155550100"


@pytest.mark.parametrize("number", ["+919876543210", "919876543210", "09876543210", "9876543210",
                                    "+91-98765-43210", "91 98765 43210", "0091 9876543210", "98765 43210"])
def test_knowlarity_numbers_as_indian_call_logs_write_them(number):
    record = json.dumps({"uuid": "u-1", "customer_number": number, "start_time": "2026-12-03 15:33:22"})
    [lead] = knowlarity_call.parse(record, {}, CONFIG)
    result = normalized(lead)  # the pipeline's default region is US: the provider's home market decides
    assert result.phone_e164 == "+919876543210"
    assert result.country is None  # the number's region is not where the person is


def test_knowlarity_caller_from_abroad_keeps_their_country_code():
    record = json.dumps({"uuid": "u-2", "customer_number": "+14155550123"})
    [lead] = knowlarity_call.parse(record, {}, CONFIG)
    assert normalized(lead).phone_e164 == "+14155550123"


def test_meta_lead_download_utf16_tsv_through_the_upload_door():
    raw = (FIXTURES / "meta_leads_download.tsv").read_bytes()
    assert raw.startswith(b"\xff\xfe")
    published, kind = upload_csv(raw, "leads.csv", "text/csv")
    assert kind == "utf16"
    leads = csv_upload.parse(published.decode("utf-8"), {}, CONFIG)
    assert [(lead.full_name, normalized(lead).phone_e164, lead.email) for lead in leads] == [
        ("Test Person", "+14155550123", "test.person@example.com"),  # Meta writes phones as p:+1...
        ("Otra Persona", "+919876543210", "otra.persona@example.com")]
    assert leads[0].form_id == "f:555555555" and leads[0].city == "San Francisco"
    assert leads[0].event_time == datetime(2026, 12, 3, 9, 14, 51, tzinfo=UTC)
    assert leads[0].extra["platform"] == "fb"


def test_semicolon_and_tab_separated_uploads():
    semicolons = "Name;Phone;E-mail;City\nAnna Müller;+49 30 901820;anna@example.com;Berlin\n"
    [lead] = csv_upload.parse(semicolons, {}, CONFIG)
    assert (lead.full_name, lead.phone, lead.email, lead.city) == ("Anna Müller", "+49 30 901820",
                                                                   "anna@example.com", "Berlin")
    tabs = "name\tphone\tnotes\nJo Doe\t+14155550123\tcall after 5, please\n"
    [lead] = csv_upload.parse(tabs, {}, CONFIG)
    assert lead.message == "call after 5, please"
    commas = 'name,phone,notes\nJo Doe,+14155550123,"a; b"\n'
    [lead] = csv_upload.parse(commas, {}, CONFIG)
    assert lead.message == "a; b"
