"""Synthetic people and provider payloads, for the data generator and tests.

``random_person`` makes a realistic US, GB or IN person with a valid phone number (checked with
``phonenumbers``), a syntactically valid e-mail and a postal code that belongs to the city.
``render`` turns a person into the payload text and message attributes one provider would
publish (every provider except ``inbound_email``, see ``pipelines.synthetic.emails``).
Everything is deterministic given the ``random.Random`` passed in.
"""

from __future__ import annotations

import csv
import io
import json
import random
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import phonenumbers

SYNTHETIC_GOOGLE_KEY = "leadflow-synthetic-google-key"
IST = timezone(timedelta(hours=5, minutes=30))


@dataclass
class Person:
    """One synthetic person. ``phone`` is E.164; renderers format it the way each provider does."""

    full_name: str
    first_name: str
    last_name: str
    phone: str
    email: str
    country: str  # ISO alpha-2
    postal_code: str
    city: str
    state: str
    message: str | None = None


@dataclass(frozen=True)
class _Place:
    city: str
    state: str
    postal_codes: tuple[str, ...]
    area_codes: tuple[str, ...] = ()  # US only


_PLACES: dict[str, tuple[_Place, ...]] = {
    "US": (
        _Place("New York", "NY", ("10001", "10011", "10016", "10025"), ("212", "646", "917")),
        _Place("San Francisco", "CA", ("94103", "94105", "94110", "94117"), ("415", "628")),
        _Place("Chicago", "IL", ("60601", "60614", "60622", "60657"), ("312", "773")),
        _Place("Boston", "MA", ("02108", "02111", "02115", "02116"), ("617", "857")),
        _Place("Seattle", "WA", ("98101", "98103", "98109", "98122"), ("206",)),
        _Place("Miami", "FL", ("33125", "33130", "33131", "33137"), ("305", "786")),
        _Place("Austin", "TX", ("78701", "78704", "78745"), ("512", "737")),
        _Place("Denver", "CO", ("80202", "80205", "80211"), ("303", "720")),
    ),
    "GB": (
        _Place("London", "Greater London", ("SW1A 1AA", "EC1A 1BB", "N1 9GU", "SE1 7PB")),
        _Place("Manchester", "Greater Manchester", ("M1 1AE", "M2 3WQ", "M4 1HQ")),
        _Place("Birmingham", "West Midlands", ("B1 1BB", "B2 4QA", "B5 4BU")),
        _Place("Leeds", "West Yorkshire", ("LS1 4AP", "LS2 7EW")),
        _Place("Edinburgh", "Scotland", ("EH1 1YZ", "EH2 2EQ", "EH3 9AA")),
    ),
    "IN": (
        _Place("Mumbai", "Maharashtra", ("400001", "400050", "400076")),
        _Place("New Delhi", "Delhi", ("110001", "110017", "110085")),
        _Place("Bengaluru", "Karnataka", ("560001", "560034", "560095")),
        _Place("Pune", "Maharashtra", ("411001", "411038")),
        _Place("Hyderabad", "Telangana", ("500001", "500081")),
        _Place("Chennai", "Tamil Nadu", ("600001", "600040")),
    ),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST_NAMES = {
    "US": _words(
        "James Mary Robert Patricia Michael Jennifer David Linda Maria Carlos Wei Aisha Daniel "
        "Emily Olivia Ethan Sofia Noah Grace Marcus"
    ),
    "GB": _words(
        "Oliver Amelia George Isla Harry Ava Jack Emily Mohammed Priya Charlotte Thomas Freya Alfie"
    ),
    "IN": _words("Aarav Priya Rohan Ananya Vikram Sneha Arjun Kavya Rahul Pooja Aditya Neha Karthik Divya"),
}
_LAST_NAMES = {
    "US": _words(
        "Smith Johnson Williams Brown Garcia Martinez Nguyen Chen Davis Rodriguez Lee Walker "
        "O'Brien Washington Kim"
    ),
    "GB": _words("Taylor Jones Evans Wilson Thomas Roberts Patel Khan Hughes Wright McDonald Clarke"),
    "IN": _words("Sharma Patel Iyer Reddy Singh Gupta Nair Kumar Mehta Desai Das"),
}
_MAIL_DOMAINS = {
    "US": _words("gmail.com yahoo.com outlook.com icloud.com hotmail.com comcast.net"),
    "GB": _words("gmail.com yahoo.co.uk outlook.com btinternet.com hotmail.co.uk"),
    "IN": _words("gmail.com yahoo.co.in rediffmail.com outlook.com"),
}
# corporate domains: pipelines.synthetic.history labels their e-mails "corporate"
WORK_DOMAINS = ("acmecorp.com", "northwind-traders.com", "globex.io", "initech.net", "umbrella-health.org")
_MESSAGES = (
    "Looking for a 3 bedroom home in {city}, please call me.",
    "Is this property still available? I'd like to schedule a viewing.",
    "Interested in buying within the next 3 months. Budget is flexible.",
    "Please send me more details about listings near {city}.",
    "Can someone call me back after 5pm?",
    "We are relocating to {city} and need a rental from next month.",
)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _candidate_phone(rng: random.Random, country: str, place: _Place) -> str:
    if country == "US":
        return f"+1{rng.choice(place.area_codes)}{rng.randint(2, 9)}{_digits(rng, 2)}{_digits(rng, 4)}"
    if country == "GB":
        return f"+447{rng.choice('456789')}{_digits(rng, 8)}"
    return f"+91{rng.choice('6789')}{_digits(rng, 9)}"


def random_phone(rng: random.Random, country: str, place: _Place) -> str:
    """A phone number (E.164) that phonenumbers considers valid for ``country``, drawn until one is."""
    for _ in range(200):
        number = _candidate_phone(rng, country, place)
        parsed = phonenumbers.parse(number)
        if phonenumbers.is_valid_number(parsed) and phonenumbers.region_code_for_number(parsed) == country:
            return number
    raise RuntimeError(f"no valid {country} phone number drawn in 200 tries")


def _email(rng: random.Random, country: str, first: str, last: str) -> str:
    f, last_ = (("".join(c for c in s.lower() if c.isalnum())) for s in (first, last))
    local = rng.choice(
        (
            f"{f}.{last_}",
            f"{f}{last_}",
            f"{f[0]}{last_}",
            f"{f}_{last_}",
            f"{f}.{last_}{rng.randint(1, 99)}",
            f"{f}{rng.randint(1970, 2005)}",
        )
    )
    domain = rng.choice(WORK_DOMAINS) if rng.random() < 0.2 else rng.choice(_MAIL_DOMAINS[country])
    return f"{local}@{domain}"


def random_person(rng: random.Random, country: str | None = None) -> Person:
    """A realistic person from the US (60%), GB or IN, or from ``country`` when given."""
    country = country or rng.choices(("US", "GB", "IN"), weights=(6, 2, 2))[0]
    if country not in _PLACES:
        raise ValueError(f"no synthetic data for country {country!r}")
    place = rng.choice(_PLACES[country])
    first, last = rng.choice(_FIRST_NAMES[country]), rng.choice(_LAST_NAMES[country])
    message = rng.choice(_MESSAGES).format(city=place.city) if rng.random() < 0.7 else None
    return Person(
        full_name=f"{first} {last}",
        first_name=first,
        last_name=last,
        phone=random_phone(rng, country, place),
        email=_email(rng, country, first, last),
        country=country,
        postal_code=rng.choice(place.postal_codes),
        city=place.city,
        state=place.state,
        message=message,
    )


def make_external_id(provider: str, rng: random.Random) -> str:
    """A provider-shaped id: Meta digits, Twilio SM.../CA... sids, Knowlarity UUIDs, ..."""
    hex32 = f"{rng.getrandbits(128):032x}"
    if provider == "meta_lead_ads":
        return _digits(rng, 1).replace("0", "1") + _digits(rng, 15)
    if provider == "google_ads_lead_form":
        return "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(40)
        )
    if provider == "knowlarity_call":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if provider == "twilio_sms":
        return "SM" + hex32
    if provider == "twilio_voice":
        return "CA" + hex32
    return f"{provider}-{hex32[:16]}"


def _national_or_international(phone: str, country: str) -> str:
    number = phonenumbers.parse(phone)
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if country == "US"
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(number, fmt)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _render_meta(
    person: Person, external_id: str, event_time: datetime, rng: random.Random, *, is_organic: bool = False
) -> dict[str, Any] | str:
    postal_key = "zip_code" if person.country == "US" else "post_code"
    if rng.random() < 0.5:
        names = [{"name": "full_name", "values": [person.full_name]}]
    else:
        names = [
            {"name": "first_name", "values": [person.first_name]},
            {"name": "last_name", "values": [person.last_name]},
        ]
    fields = [
        *names,
        {"name": "email", "values": [person.email]},
        {"name": "phone_number", "values": [person.phone]},
        {"name": "city", "values": [person.city]},
        {"name": postal_key, "values": [person.postal_code]},
        {
            "name": "when_are_you_looking_to_buy?",
            "values": [rng.choice(["asap", "1-3_months", "3-6_months"])],
        },
    ]
    if person.message:
        fields.append(
            {
                "name": rng.choice(["any_questions_or_comments?", "message_for_the_agent"]),
                "values": [person.message],
            }
        )
    return {
        "id": external_id,
        "created_time": event_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "ad_id": "2385" + _digits(rng, 13),
        "adset_id": "2385" + _digits(rng, 13),
        "campaign_id": "2385" + _digits(rng, 13),
        "form_id": "1" + _digits(rng, 14),
        "is_organic": is_organic,
        "platform": rng.choice(["fb", "ig"]),
        "field_data": fields,
    }


def _render_google(
    person: Person,
    external_id: str,
    event_time: datetime,
    rng: random.Random,
    *,
    google_key: str = SYNTHETIC_GOOGLE_KEY,
    is_test: bool = False,
) -> dict[str, Any] | str:
    columns = [
        ("FULL_NAME", "Full Name", person.full_name),
        ("EMAIL", "User Email", person.email),
        ("PHONE_NUMBER", "User Phone", person.phone),
        ("CITY", "City", person.city),
        ("POSTAL_CODE", "Postal Code", person.postal_code),
        ("COUNTRY", "Country", person.country),
    ]
    if person.message:
        columns.append(("ANY_QUESTIONS_FOR_US?", "Any questions for us?", person.message))
    return {
        "lead_id": external_id,
        "api_version": "1.0",
        "form_id": int(_digits(rng, 11)),
        "campaign_id": int("1" + _digits(rng, 10)),
        "adgroup_id": int("1" + _digits(rng, 11)),
        "creative_id": int("6" + _digits(rng, 11)),
        "gcl_id": "Cj0KCQ"
        + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop") for _ in range(30)),
        "google_key": google_key,
        "is_test": is_test,
        "user_column_data": [{"column_name": n, "string_value": v, "column_id": c} for c, n, v in columns],
    }


def _render_knowlarity(
    person: Person, external_id: str, event_time: datetime, rng: random.Random
) -> dict[str, Any] | str:
    local = event_time.astimezone(IST)
    start = local.strftime("%Y-%m-%d %H:%M:%S") + ("" if rng.random() < 0.5 else "+05:30")
    duration = rng.randint(0, 600)
    return {
        "uuid": external_id,
        "customer_number": person.phone,
        "start_time": start,
        "call_duration": duration if rng.random() < 0.5 else str(duration),
        "agent_number": "+91" + rng.choice(["80", "22", "11"]) + _digits(rng, 8),
        "knowlarity_number": "+9180" + _digits(rng, 8),
        "call_type": "incoming",
        "Call_Status": "Connected" if duration else "Missed",
    }


def _twilio_location(person: Person) -> dict[str, str]:
    if person.country == "US":  # Twilio only resolves city / state / zip for North American numbers
        return {
            "FromCity": person.city.upper(),
            "FromState": person.state,
            "FromZip": person.postal_code,
            "FromCountry": "US",
        }
    return {"FromCity": "", "FromState": "", "FromZip": "", "FromCountry": person.country}


def _render_twilio_sms(
    person: Person, external_id: str, event_time: datetime, rng: random.Random
) -> dict[str, Any] | str:
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": external_id,
        "NumMedia": "0",
        "ToCity": "",
        **_twilio_location(person),
        "SmsSid": external_id,
        "SmsStatus": "received",
        "Body": person.message or "Hi, I saw your listing. Is it still available?",
        "To": "+14155550199",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": external_id,
        "AccountSid": "AC" + f"{rng.getrandbits(128):032x}",
        "From": person.phone,
        "ApiVersion": "2010-04-01",
    }
    return urllib.parse.urlencode(form)


def _render_twilio_voice(
    person: Person, external_id: str, event_time: datetime, rng: random.Random
) -> dict[str, Any] | str:
    loc = _twilio_location(person)
    form = {
        "Called": "+14155550199",
        "ToState": "CA",
        "CallerCountry": loc["FromCountry"],
        "Direction": "inbound",
        "CallerState": loc["FromState"],
        "ToZip": "",
        "CallSid": external_id,
        "To": "+14155550199",
        "CallerZip": loc["FromZip"],
        "ToCountry": "US",
        "ApiVersion": "2010-04-01",
        "CallStatus": "ringing",
        "From": person.phone,
        "AccountSid": "AC" + f"{rng.getrandbits(128):032x}",
        "Caller": person.phone,
        **loc,
    }
    return urllib.parse.urlencode(form)


def _render_api(
    person: Person, external_id: str, event_time: datetime, rng: random.Random, *, is_test: bool = False
) -> dict[str, Any] | str:
    body: dict[str, Any] = {"external_id": external_id}
    if rng.random() < 0.5:
        body["full_name"] = person.full_name
    else:
        body.update(first_name=person.first_name, last_name=person.last_name)
    phone = person.phone if rng.random() < 0.6 else _national_or_international(person.phone, person.country)
    body.update(
        phone=phone,
        email=person.email,
        country=person.country,
        postal_code=person.postal_code,
        city=person.city,
        state=person.state,
        created_at=_rfc3339(event_time),
        source=rng.choice(["landing-page/spring-open-house", "partner/homefinder", "website/contact"]),
    )
    if person.message:
        body["message"] = person.message
    if is_test:
        body["is_test"] = True
    return body


_CSV_HEADERS = (
    ("Name", "Phone", "Email", "City", "State", "Zip", "Country", "Message", "Lead ID", "Created At"),
    (
        "full_name",
        "phone_number",
        "email_address",
        "city",
        "state",
        "postal_code",
        "country",
        "notes",
        "id",
        "created",
    ),
    (
        "Full Name",
        "Mobile",
        "E-mail",
        "City",
        "Region",
        "Postal Code",
        "Country",
        "Comments",
        "External ID",
        "Date",
    ),
)


def render_csv(
    persons: list[Person], external_ids: list[str], event_time: datetime, rng: random.Random
) -> str:
    """An upload with a header (one of a few real-world spellings) and one row per person."""
    header = rng.choice(_CSV_HEADERS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=rng.choice(["\r\n", "\n"]))
    writer.writerow(header)
    for person, external_id in zip(persons, external_ids, strict=True):
        writer.writerow(
            [
                person.full_name,
                _national_or_international(person.phone, person.country),
                person.email,
                person.city,
                person.state,
                person.postal_code,
                person.country,
                person.message or "",
                external_id,
                _rfc3339(event_time),
            ]
        )
    return out.getvalue()


def _render_csv(
    person: Person,
    external_id: str,
    event_time: datetime,
    rng: random.Random,
    *,
    persons: list[Person] | None = None,
) -> str:
    if persons is None:
        return render_csv([person], [external_id], event_time, rng)
    return render_csv(persons, [f"{external_id}-{i}" for i in range(1, len(persons) + 1)], event_time, rng)


RENDERERS: dict[str, Callable[..., dict[str, Any] | str]] = {
    "meta_lead_ads": _render_meta,
    "google_ads_lead_form": _render_google,
    "knowlarity_call": _render_knowlarity,
    "twilio_sms": _render_twilio_sms,
    "twilio_voice": _render_twilio_voice,
    "api": _render_api,
    "csv_upload": _render_csv,
}
PROVIDERS = tuple(RENDERERS)


def render(
    provider: str, person: Person, *, external_id: str, event_time: datetime, rng: random.Random, **kw: Any
) -> tuple[str, dict[str, str]]:
    """(payload text, message attributes) for ``person`` as ``provider`` would send them.

    A naive ``event_time`` is taken as UTC. Provider options: meta_lead_ads ``is_organic``;
    google_ads_lead_form ``google_key``, ``is_test``; api ``is_test``; csv_upload ``persons`` (one row
    each; ids ``<external_id>-<n>``; ``person`` is then ignored).
    """
    if provider not in RENDERERS:
        raise ValueError(f"no synthetic renderer for provider {provider!r}")
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)  # naive times are UTC, as in synthetic_email
    payload = RENDERERS[provider](person, external_id, event_time, rng, **kw)
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return text, {"provider": provider}
