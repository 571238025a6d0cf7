"""Synthetic lead e-mails for the ``inbound_email`` provider, for the data generator and tests.

``render_email`` turns a person into the raw RFC 822 text a portal (Zillow, Realtor.com, Homes.com)
would send to our lead inboxes, or a message a person wrote directly ("unknown"). Messages are
multipart/alternative (text + HTML). Portal HTML carries what real lead mails carry and the parser
must ignore: a <script> and <style> holding decoy "labels", an external stylesheet and an external
tracking pixel. The addresses follow the match rules in ``transforms/reference_data/sources.csv``.

``person`` is duck-typed: any object with full_name, first_name, last_name, phone (E.164), email,
country, postal_code, city, state and message. Everything is deterministic given ``rng``.
"""

from __future__ import annotations

import html
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import phonenumbers

SOURCES = ("zillow", "realtor_com", "homes_com", "unknown")
PROPERTY_ADDRESSES = (
    "123 Main St, Seattle, WA 98101",
    "4500 Oak Ave, Austin, TX 78731",
    "77 Harbor View Dr, San Diego, CA 92101",
    "1600 Elm St Apt 4B, Denver, CO 80202",
    "89 Beacon St, Boston, MA 02108",
    "2500 Peachtree Rd NW, Atlanta, GA 30305",
    "310 W 72nd St, New York, NY 10023",
    "845 N Michigan Ave, Chicago, IL 60611",
)
DEFAULT_MESSAGES = (
    "I would like to schedule a tour of this home.",
    "Is this property still available? Please call me.",
    "Can you send me more details about the HOA fees?",
)
DIRECT_INBOX = "info@leads.example.com"

_DECOY_SCRIPT = (
    "<script type=\"text/javascript\">\nEmail: tracker@decoy.invalid\nPhone: +1 000 000 0000\n"
    "window.dataLayer = window.dataLayer || [];</script>"
)
_STYLE = "<style>td { font-family: Arial, sans-serif; } .label { color: #666; }</style>"


def _phone_display(e164: str, fmt: int) -> str:
    """The phone the way a portal shows it: national format for US numbers, else international."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    region = phonenumbers.region_code_for_number(number)
    if region != "US":
        fmt = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, fmt)


def _esc(value: Any) -> str:
    return html.escape(str(value or ""))


def _html_message(message: str) -> str:
    return "<br>".join(_esc(line) for line in message.splitlines())


def _tracker(domain: str, external_id: str) -> str:
    return (
        f'<img src="https://{domain}/t/open.gif?m={_esc(external_id)}" width="1" height="1" alt="">'
        f'<link rel="stylesheet" href="https://{domain}/css/email.css">'
    )


def _page(head_title: str, body: str, domain: str, external_id: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{_esc(head_title)}</title>{_STYLE}"
        f"</head><body>{_DECOY_SCRIPT}{body}{_tracker(domain, external_id)}"
        "<!-- Phone: +1 999 999 9999 --></body></html>"
    )


def _zillow(person: Any, address: str, message: str, external_id: str, rng: random.Random) -> dict[str, str]:
    phone = _phone_display(person.phone, phonenumbers.PhoneNumberFormat.NATIONAL)
    if rng.random() < 0.5:
        subject = f"New Zillow lead: {address}"
    else:
        subject = f"Zillow Premier Agent: New contact from {person.full_name}"
    property_label = rng.choice(("Property:", "Regarding:"))
    text = (
        f"{person.full_name} is interested in {address}\n\nName: {person.full_name}\nEmail: {person.email}\n"
        f"Phone: {phone}\n{property_label} {address}\n\nMessage:\n{message}\n\n"
        "You are receiving this e-mail because you are a Zillow Premier Agent.\n"
    )
    body = (
        "<table class=\"lead\" width=\"600\">"
        f"<tr><td><h2>New contact from Zillow</h2></td></tr>"
        f"<tr><td>{_esc(person.full_name)} is interested in <b>{_esc(address)}</b></td></tr>"
        f"<tr><td><span class=\"label\">Name:</span> {_esc(person.full_name)}</td></tr>"
        f"<tr><td><span class=\"label\">Email:</span> "
        f"<a href=\"mailto:{_esc(person.email)}\">{_esc(person.email)}</a></td></tr>"
        f"<tr><td><span class=\"label\">Phone:</span> "
        f"<a href=\"tel:{_esc(person.phone)}\">{_esc(phone)}</a></td></tr>"
        f"<tr><td><span class=\"label\">{property_label}</span> {_esc(address)}</td></tr>"
        f"<tr><td><span class=\"label\">Message:</span><br>{_html_message(message)}</td></tr>"
        "</table><p>You are receiving this e-mail because you are a Zillow Premier Agent. "
        "<a href=\"https://www.zillow.com/unsubscribe\">Unsubscribe</a></p>"
    )
    return {
        "From": "Zillow <leads@mail.zillow.com>", "To": "zillow@leads.example.com", "Subject": subject,
        "text": text, "html": _page("New Zillow lead", body, "www.zillow.com", external_id),
        "html_cte": "quoted-printable",
    }


def _realtor(person: Any, address: str, message: str, external_id: str, rng: random.Random) -> dict[str, str]:
    rows = (
        ("First Name", person.first_name), ("Last Name", person.last_name),
        ("Email Address", person.email), ("Phone Number", person.phone),
        (rng.choice(("Property Address", "Listing address")), address), ("Comments", message),
    )
    cells = "".join(
        f"<tr><td class=\"label\">{_esc(label)}</td><td>{_html_message(str(value))}</td></tr>"
        for label, value in rows
    )
    text = "\n".join(f"{label}: {value}" for label, value in rows) + "\n\nrealtor.com - Move, Inc.\n"
    body = (
        "<h1>You have a new lead from realtor.com</h1>"
        f"<table cellpadding=\"4\">{cells}</table>"
        "<p>This e-mail was sent by realtor.com on behalf of a consumer.</p>"
    )
    return {
        "From": "realtor.com <leads@email.realtor.com>", "To": "realtor@leads.example.com",
        "Subject": f"New realtor.com lead - {address}",
        "text": text, "html": _page("realtor.com lead", body, "www.realtor.com", external_id),
        "html_cte": "base64",
    }


def _homes(person: Any, address: str, message: str, external_id: str, rng: random.Random) -> dict[str, str]:
    pairs = (
        ("Full Name", person.full_name), ("Email", person.email), ("Phone", person.phone),
        ("Property", address), ("Message", message),
    )
    text = "\n".join(f"{label}: {value}" for label, value in pairs) + "\n\n-- \nHomes.com\n"
    body = "".join(
        f"<p><strong>{_esc(label)}:</strong> {_html_message(str(value))}</p>" for label, value in pairs
    )
    greeting = rng.choice(
        ("Good news! A home shopper contacted you.", "You have a new inquiry from Homes.com.")
    )
    return {
        "From": "Homes.com <leads@homes.com>", "To": "homes@leads.example.com",
        "Subject": f"New inquiry: {address}",
        "text": text, "html": _page("Homes.com", f"<p>{greeting}</p>{body}", "www.homes.com", external_id),
        "html_cte": "",
    }


def _direct(person: Any, address: str, message: str, external_id: str, rng: random.Random) -> dict[str, str]:
    phone = _phone_display(person.phone, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    greeting = rng.choice(("Hi,", "Hello,", "Good morning,"))
    text = f"{greeting}\n\n{message}\n\nThanks,\n-- \n{person.full_name}\nPhone: {phone}\n"
    body = (
        f"<div dir=\"ltr\"><div>{_esc(greeting)}</div><div><br></div><div>{_html_message(message)}</div>"
        f"<div><br></div><div>Thanks,</div><div>-- </div><div>{_esc(person.full_name)}</div>"
        f"<div>Phone: <a href=\"tel:{_esc(person.phone)}\">{_esc(phone)}</a></div></div>"
    )
    return {
        # formataddr quotes a name holding specials (". 0" unquoted crashes the stdlib header parser)
        "From": formataddr((person.full_name, person.email)), "To": DIRECT_INBOX,
        "Subject": f"Question about {address}", "text": text, "html": f"<html><body>{body}</body></html>",
        "html_cte": "",
    }


_RENDERERS = {"zillow": _zillow, "realtor_com": _realtor, "homes_com": _homes, "unknown": _direct}


def render_email(
    person: Any, *, source: str, external_id: str, event_time: datetime, rng: random.Random,
) -> tuple[str, dict[str, str]]:
    """(raw RFC 822 text, attributes) of a lead e-mail about ``person`` from ``source``.

    The Message-ID is ``<external_id>`` so the parser's external_id equals ``external_id``; the Date
    is ``event_time`` in UTC at second precision (a naive time is taken as UTC).
    """
    if source not in _RENDERERS:
        raise ValueError(f"unknown e-mail source {source!r}; expected one of {SOURCES}")
    address = rng.choice(PROPERTY_ADDRESSES)
    message = person.message or rng.choice(DEFAULT_MESSAGES)
    parts = _RENDERERS[source](person, address, message, external_id, rng)
    when = event_time.replace(tzinfo=UTC) if event_time.tzinfo is None else event_time.astimezone(UTC)

    msg = EmailMessage()
    msg["From"] = parts["From"]
    msg["To"] = parts["To"]
    msg["Subject"] = parts["Subject"]
    msg["Date"] = format_datetime(when.replace(microsecond=0))
    msg["Message-ID"] = f"<{external_id}>"
    msg.set_content(parts["text"])
    if parts["html_cte"]:
        msg.add_alternative(parts["html"], subtype="html", cte=parts["html_cte"])
    else:
        msg.add_alternative(parts["html"], subtype="html")
    msg.set_boundary(f"=_leadflow_{rng.getrandbits(64):016x}")  # not the stdlib's random boundary
    return msg.as_string(), {"provider": "inbound_email"}
