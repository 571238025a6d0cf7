"""Unit tests for the inbound_email parser and the synthetic e-mail renderer."""

from __future__ import annotations

import random
import socket
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.synthetic.emails import PROPERTY_ADDRESSES, SOURCES, render_email
from pipelines.synthetic.leads import Person
from transforms.parsers.base import ParseConfig, ParseError, RawLead
from transforms.parsers.inbound_email import MAX_MESSAGE_CHARS, MAX_PAYLOAD_BYTES, parse
from transforms.sources import SourceRegistry

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "inbound_email"


@pytest.fixture(scope="module")
def config() -> ParseConfig:
    return ParseConfig(registry=SourceRegistry.from_csv())


def parse_one(text: str, config: ParseConfig, attributes: dict[str, str] | None = None) -> RawLead:
    leads = parse(text, attributes or {"provider": "inbound_email"}, config)
    assert len(leads) == 1
    assert leads[0].provider == "inbound_email"
    return leads[0]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text("utf-8")


def fields(lead: RawLead) -> dict[str, object]:
    keys = (
        "external_id", "event_time", "full_name", "first_name", "last_name", "phone", "email", "country",
        "postal_code", "city", "state", "property_address", "message", "source_id", "source_verified",
    )
    return {k: getattr(lead, k) for k in keys}


EXPECTED = {
    "zillow_html.eml": {
        "external_id": "20240514161542.ZL-88231@mail.zillow.com",
        "event_time": datetime(2024, 5, 14, 16, 15, 42, tzinfo=UTC),
        "full_name": "Jane Doe", "first_name": None, "last_name": None,
        "phone": "(206) 555-0123", "email": "jane.doe@example.net", "country": None,
        "postal_code": "98101", "city": None, "state": "WA",
        "property_address": "123 Main St, Seattle, WA 98101",
        "message": "I'd like to schedule a showing this weekend.\nIs the basement finished?",
        "source_id": "zillow", "source_verified": True,
    },
    "realtor_td_cells.eml": {
        "external_id": "rdc.lead.5512904@email.realtor.com",
        "event_time": datetime(2024, 5, 15, 22, 3, 10, tzinfo=UTC),
        "full_name": None, "first_name": "Robert", "last_name": "Nguyen",
        "phone": "(312) 555-0188", "email": "rob.nguyen@example.org", "country": None,
        "postal_code": "60611", "city": None, "state": "IL",
        "property_address": "845 N Michigan Ave, Chicago, IL 60611",
        "message": "Is parking included?\nI work from home, so a second bedroom matters.",
        "source_id": "realtor_com", "source_verified": True,
    },
    "homes_generic.eml": {  # matched by the From rule (homes.com); To is the brokerage's own inbox
        "external_id": "inq-7731@notifications.homes.com",
        "event_time": datetime(2024, 6, 3, 18, 0, tzinfo=UTC),
        "full_name": "Linda Chen", "first_name": None, "last_name": None,
        "phone": "303-555-0175", "email": "linda.chen@example.com", "country": None,
        "postal_code": "80211", "city": None, "state": "CO",  # the labelled zip wins over the property's
        "property_address": "1600 Elm St Apt 4B, Denver, CO 80202",
        "message": "Does the unit come with a parking spot?",
        "source_id": "homes_com", "source_verified": True,
    },
    "plain_text_only.eml": {  # name only in the subject; address on the line after "Regarding:"
        "external_id": "pa-20240516-7781@zillow.com",
        "event_time": datetime(2024, 5, 16, 14, 20, 5, tzinfo=UTC),  # "-0000": read as UTC
        "full_name": "Carlos Martinez", "first_name": None, "last_name": None,
        "phone": "512-555-0147", "email": "carlos.m@example.org", "country": None,
        "postal_code": "78731", "city": None, "state": "TX",
        "property_address": "4500 Oak Ave, Austin, TX 78731",
        "message": "We are relocating from Denver in August.\nDo you have anything with a yard?",
        "source_id": "zillow", "source_verified": True,
    },
    "unknown_direct.eml": {  # a person writing directly: From is the contact, body is the message
        "external_id": "CAF=xyz123@mail.example.com",
        "event_time": datetime(2024, 6, 3, 14, 5, tzinfo=UTC),
        "full_name": "José García", "first_name": None, "last_name": None,
        "phone": "+1 617 555 0199", "email": "jose.garcia@example.com", "country": None,
        "postal_code": "02108", "city": None, "state": "MA",
        "property_address": "89 Beacon St, Boston, MA 02108",
        "message": "Hi there,\n\nI saw your listing on Beacon St and would love to see it next week.\n"
                   "Could you send me the disclosure documents?\n\nThanks,",
        "source_id": "email:example.com", "source_verified": False,
    },
    "html_scripts_tracking.eml": {  # matched by From (move.com); contacts only as mailto:/tel: links
        "external_id": "mv-3321@move.com",
        "event_time": datetime(2024, 6, 7, 6, 0, tzinfo=UTC),
        "full_name": "Priya Sharma", "first_name": None, "last_name": None,
        "phone": "+1-212-555-0111", "email": "priya.sharma@example.com", "country": None,
        "postal_code": "10023", "city": None, "state": "NY",
        "property_address": "310 W 72nd St, New York, NY 10023",
        "message": "Please call me in the evening.",
        "source_id": "realtor_com", "source_verified": True,
    },
    "encoded_qp_base64.eml": {  # base64 UTF-8 HTML preferred over the quoted-printable latin-1 text
        "external_id": "enc-4410@mail.zillow.com",
        "event_time": datetime(2024, 6, 8, 18, 29, 59, tzinfo=UTC),
        "full_name": "Zoë Müller", "first_name": None, "last_name": None,
        "phone": "+49 30 5550 1234", "email": "zoe.mueller@example.de", "country": None,
        "postal_code": "92101", "city": None, "state": "CA",
        "property_address": "77 Harbor View Dr, San Diego, CA 92101",
        "message": "Is there a café nearby? Budget is about 950.000 €.",
        "source_id": "zillow", "source_verified": True,
    },
    "no_contact.eml": {  # no Message-ID, bad Date, noreply Reply-To, an HTML attachment with decoys
        "external_id": None, "event_time": None,
        "full_name": None, "first_name": None, "last_name": None,
        "phone": None, "email": None, "country": None,
        "postal_code": "30305", "city": None, "state": "GA",
        "property_address": "2500 Peachtree Rd NW, Atlanta, GA 30305",
        "message": "Just browsing for now.",
        "source_id": "realtor_com", "source_verified": True,
    },
    "zillow_rental_inquiry.eml": {  # Zillow Rentals: no labels; the renter's words after "asked:", the relay Reply-To
        "external_id": None,
        "event_time": datetime(2026, 12, 3, 19, 2, 11, tzinfo=UTC),
        "full_name": "Test Person", "first_name": None, "last_name": None,
        "phone": "+12125550147", "email": "testperson.x7k2q@convo.zillow.com", "country": None,
        "postal_code": "10027", "city": None, "state": "NY",
        "property_address": "515 W 122nd St #6, New York, NY, 10027",
        "message": "I am interested in this rental and would like to schedule a viewing. Please let me know when "
                   "this would be possible.",
        "source_id": "zillow", "source_verified": True,
    },
    "realtor_subject_name.eml": {  # the name in the subject, the property address on two lines
        "external_id": None,
        "event_time": datetime(2026, 12, 3, 20, 10, tzinfo=UTC),
        "full_name": "Test Person", "first_name": "Test", "last_name": "Person",
        "phone": "(303) 555-0172", "email": "test.person@example.com", "country": None,
        "postal_code": "80202", "city": None, "state": "CO",
        "property_address": "1234 Elm St, Denver, CO 80202",
        "message": "I would like more information about 1234 Elm St, Denver, CO 80202.",
        "source_id": "realtor_com", "source_verified": True,
    },
    "trulia_premier_agent.eml": {  # Trulia's leads come in Zillow Premier Agent's layout
        "external_id": None,
        "event_time": datetime(2026, 12, 3, 22, 45, tzinfo=UTC),
        "full_name": "Test Person", "first_name": None, "last_name": None,
        "phone": "(206) 555-0164", "email": "test.person@example.com", "country": None,
        "postal_code": "98101", "city": None, "state": "WA",
        "property_address": "88 Pine St, Seattle, WA 98101",
        "message": "Is the open house still on for Saturday?",
        "source_id": "trulia", "source_verified": True,
    },
}


def test_zillow_rental_facts_go_to_extra(config: ParseConfig) -> None:
    lead = parse_one(fixture("zillow_rental_inquiry.eml"), config)
    assert {k: lead.extra.get(k) for k in ("move_in", "credit_score", "income", "pets")} == {
        "move_in": "a month", "credit_score": "720 to 850", "income": "$150000", "pets": None}  # "-" is no answer


def test_every_fixture_has_expectations() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_fields(name: str, config: ParseConfig) -> None:
    lead = parse_one(fixture(name), config)
    assert fields(lead) == EXPECTED[name]


@pytest.mark.parametrize(
    ("name", "template"),
    [("zillow_html.eml", "zillow"), ("realtor_td_cells.eml", "realtor_com"), ("homes_generic.eml", "generic"),
     ("unknown_direct.eml", "generic")],
)
def test_template_follows_the_matched_source(name: str, template: str, config: ParseConfig) -> None:
    assert parse_one(fixture(name), config).extra == {"template": template}


def test_decoys_in_scripts_styles_comments_and_attachments_are_ignored(config: ParseConfig) -> None:
    for name in ("html_scripts_tracking.eml", "no_contact.eml"):
        lead = parse_one(fixture(name), config)
        text = repr(fields(lead))
        assert "decoy" not in text.lower() and "Decoy" not in text
        for digits in ("000 000", "111 111", "222 222", "333 333"):
            assert digits not in text


def test_portal_mailto_is_not_the_lead(config: ParseConfig) -> None:
    # support@realtor.com comes first in the HTML; the buyer's mailto: is used instead.
    assert parse_one(fixture("html_scripts_tracking.eml"), config).email == "priya.sharma@example.com"


def test_nothing_is_fetched(config: ParseConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parser tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for name in ("html_scripts_tracking.eml", "zillow_html.eml"):
        parse_one(fixture(name), config)


# --- source matching ------------------------------------------------------------------------------


def minimal_email(headers: str, body: str = "Name: Ann Lee\nPhone: 555-0100\n") -> str:
    return f"{headers}\nContent-Type: text/plain; charset=utf-8\n\n{body}"


def test_transport_to_attribute_is_a_recipient(config: ParseConfig) -> None:
    text = minimal_email("From: Forwarder <fwd@relay.example>\nSubject: fwd")
    assert parse_one(text, config).source_id == "email:relay.example"
    lead = parse_one(text, config, {"provider": "inbound_email", "to": "zillow@leads.example.com"})
    assert (lead.source_id, lead.source_verified) == ("zillow", True)


@pytest.mark.parametrize("header", ["Cc", "Delivered-To", "X-Original-To"])
def test_other_recipient_headers_match(header: str, config: ParseConfig) -> None:
    headers = f"From: fwd@relay.example\nTo: team@brokerage.example\n{header}: homes@leads.example.com"
    text = minimal_email(headers)
    assert parse_one(text, config).source_id == "homes_com"


def test_sender_rule_matches_subdomains_and_sender_header(config: ParseConfig) -> None:
    text = minimal_email("From: fwd@relay.example\nSender: bounce@em.realtor.com\nTo: x@brokerage.example")
    assert parse_one(text, config).source_id == "realtor_com"


def test_unmatched_source_uses_sender_domain_and_from_contact(config: ParseConfig) -> None:
    text = minimal_email("From: Ann Lee <Ann.Lee@Example.ORG>\nTo: info@leads.example.com", "Call me please.")
    lead = parse_one(text, config)
    assert (lead.source_id, lead.source_verified) == ("email:example.org", False)
    assert (lead.full_name, lead.email, lead.message) == ("Ann Lee", "Ann.Lee@Example.ORG", "Call me please.")


def test_from_is_not_the_contact_for_portals_or_noreply(config: ParseConfig) -> None:
    portal = parse_one(minimal_email("From: Zillow <leads@mail.zillow.com>", "Hello"), config)
    assert (portal.email, portal.full_name, portal.message) == (None, None, None)
    robot = parse_one(minimal_email("From: Robot <no-reply@crm.example>", "Hello"), config)
    assert robot.email is None and robot.source_id == "email:crm.example"


def test_reply_to_of_a_portal_mail_is_the_contact(config: ParseConfig) -> None:
    text = minimal_email(
        "From: Zillow <leads@mail.zillow.com>\nReply-To: Ann Lee <ann@example.org>\n"
        "To: zillow@leads.example.com",
        "Message: hi",
    )
    lead = parse_one(text, config)
    assert (lead.email, lead.full_name, lead.source_id) == ("ann@example.org", "Ann Lee", "zillow")


# --- robustness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        "From: \"unterminated <a@b\nTo: <<<@@@>>>",
        "From: =?utf-8?q?broken=ZZ?= <x@example.org>\nTo: ,,,;;;",
        "From: a@b.example\nTo: Group: ;\nCc: undisclosed-recipients:;",
        "From: a@b.example\nDate: Mon, 99 Foo 2024 99:99:99 +9999",
        "From: a@b.example\nMessage-ID: <<<>>>\nContent-Type: text/plain; charset=\"no-such-charset\"",
        "From: a@b.example\nContent-Type: multipart/mixed",
        "From: a@b.example\nContent-Transfer-Encoding: base64\nContent-Type: text/plain; charset=idna",
    ],
)
def test_malformed_headers_do_not_crash(headers: str, config: ParseConfig) -> None:
    lead = parse_one(f"{headers}\n\nPhone: 555-0100\n", config)
    assert lead.event_time is None or lead.event_time.tzinfo is not None


def test_quoted_printable_latin1_plain_text(config: ParseConfig) -> None:
    text = (
        "From: Homes.com <leads@homes.com>\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
        "Full Name: Ren=E9e Fran=E7ois\n"
        "Message: Tr=E8s bien, a very long line that is wrapped by =\nsoft breaks.\n"
    )
    lead = parse_one(text, config)
    assert lead.full_name == "Renée François"
    assert lead.message == "Très bien, a very long line that is wrapped by soft breaks."


def test_message_is_capped(config: ParseConfig) -> None:
    text = minimal_email("From: Ann <ann@example.org>", "Message: " + "x" * 20_000)
    assert len(parse_one(text, config).message or "") == MAX_MESSAGE_CHARS


def test_aware_date_is_converted_to_utc(config: ParseConfig) -> None:
    lead = parse_one(minimal_email("From: a@example.org\nDate: Tue, 31 Dec 2024 23:30:00 -0500"), config)
    assert lead.event_time == datetime(2025, 1, 1, 4, 30, tzinfo=UTC)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "", "   \n  ", "hello world, this is not an e-mail",
        "Subject: hi\nTo: zillow@leads.example.com\n\n   \n",
    ],
)
def test_not_an_email(text: str, config: ParseConfig) -> None:
    with pytest.raises(ParseError) as info:
        parse(text, {}, config)
    assert info.value.error_type == "invalid_email"


def test_payload_too_large(config: ParseConfig) -> None:
    text = minimal_email("From: Ann Lee <ann@example.org>", "Phone: 555-0100\n" + "y" * MAX_PAYLOAD_BYTES)
    with pytest.raises(ParseError) as info:
        parse(text, {}, config)
    assert info.value.error_type == "payload_too_large"
    # multi-byte characters count as bytes, not characters
    with pytest.raises(ParseError, match="exceeds"):
        parse(minimal_email("From: a@example.org", "é" * (MAX_PAYLOAD_BYTES // 2 + 10)), {}, config)


def test_error_messages_carry_no_pii(config: ParseConfig) -> None:
    for text in ("Name: Ann Lee\nPhone: 206-555-0100\nEmail: ann@example.org\n",
                 minimal_email("From: Ann Lee <ann@example.org>", "206-555-0100 " * 200_000)):
        with pytest.raises(ParseError) as info:
            parse(text, {}, config)
        for pii in ("Ann", "555", "example.org"):
            assert pii not in info.value.message and pii not in str(info.value)


# --- synthetic round trip -------------------------------------------------------------------------




PEOPLE = (
    Person("Maria Johnson", "Maria", "Johnson", "+12065550123", "maria.j@example.com", "US", "98101",
               "Seattle", "WA", "Is the garage heated?\nWe have two cars & a <boat>."),
    Person("Priya Iyer", "Priya", "Iyer", "+919812345678", "priya.iyer@example.in", "IN", "400001",
               "Mumbai", "Maharashtra", None),
    Person("Oliver Brown", "Oliver", "Brown", "+447700900123", "oliver@example.co.uk", "GB", "SW1A 1AA",
               "London", "Greater London", "Looking to buy in the spring."),
)
EXPECTED_SOURCE = {
    "zillow": ("zillow", True), "realtor_com": ("realtor_com", True), "homes_com": ("homes_com", True),
}


def digits(value: str | None) -> str:
    return "".join(ch for ch in value or "" if ch.isdigit())


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("person", PEOPLE, ids=lambda p: p.country)
def test_render_then_parse_round_trip(source: str, person: Person, config: ParseConfig) -> None:
    when = datetime(2024, 7, 4, 12, 34, 56, 789000, tzinfo=UTC)
    text, attributes = render_email(person, source=source, external_id=f"lead-{source}-42", event_time=when,
                                    rng=random.Random(7))
    assert attributes == {"provider": "inbound_email"}
    lead = parse_one(text, config, attributes)
    domain = person.email.rpartition("@")[2]
    assert (lead.source_id, lead.source_verified) == EXPECTED_SOURCE.get(source, (f"email:{domain}", False))
    assert lead.external_id == f"lead-{source}-42"
    assert lead.event_time == when.replace(microsecond=0)
    assert lead.email == person.email
    assert digits(lead.phone).endswith(digits(person.phone)[-9:])
    if source == "realtor_com":
        assert (lead.first_name, lead.last_name) == (person.first_name, person.last_name)
    else:
        assert lead.full_name == person.full_name
    if person.message:
        assert " ".join(person.message.split()) in " ".join((lead.message or "").split())
    else:
        assert lead.message
    if source != "unknown":
        assert lead.property_address in PROPERTY_ADDRESSES
        assert lead.postal_code == lead.property_address[-5:]
    assert "decoy" not in repr(fields(lead))


def test_render_is_deterministic_and_varies_with_rng() -> None:
    person = PEOPLE[0]
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

    def render(seed: int) -> str:
        rng = random.Random(seed)
        return render_email(person, source="zillow", external_id="x1", event_time=when, rng=rng)[0]

    assert render(1) == render(1)  # including the MIME boundary
    assert len({render(seed) for seed in range(10)}) > 1


def test_render_rejects_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown e-mail source"):
        render_email(PEOPLE[0], source="craigslist", external_id="x", event_time=datetime.now(UTC),
                     rng=random.Random(0))
