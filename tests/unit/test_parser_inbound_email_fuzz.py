"""Fuzz the inbound_email parser: whatever the text, only ParseError may escape."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.synthetic.emails import SOURCES, render_email
from pipelines.synthetic.leads import Person
from transforms.parsers.base import ParseConfig, ParseError, RawLead
from transforms.parsers.inbound_email import MAX_MESSAGE_CHARS, parse
from transforms.sources import SourceRegistry

pytestmark = pytest.mark.fuzz

CONFIG = ParseConfig(registry=SourceRegistry.from_csv())
FIXTURES = sorted((Path(__file__).resolve().parents[1] / "data" / "fixtures" / "inbound_email").glob("*.eml"))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT_FIELDS = (
    "external_id", "full_name", "first_name", "last_name", "phone", "email", "country", "postal_code", "city",
    "state", "property_address", "message", "source_id",
)




# the e-mail limits' own dead letters (docs/input-limits.md)
EMAIL_LIMIT_ERRORS = ("mime_too_deep", "mime_too_many_parts", "too_many_headers", "header_too_long",
                      "too_many_encoded_words")


def check(text: str, attributes: dict[str, str] | None = None) -> None:
    """Parse; only ParseError may escape, and a result is one well-formed RawLead."""
    try:
        leads = parse(text, attributes or {"provider": "inbound_email"}, CONFIG)
    except ParseError as e:
        assert e.error_type in ("invalid_email", "payload_too_large", *EMAIL_LIMIT_ERRORS)
        return
    assert len(leads) == 1
    lead = leads[0]
    assert isinstance(lead, RawLead) and lead.provider == "inbound_email"
    for name in TEXT_FIELDS:
        value = getattr(lead, name)
        assert value is None or (isinstance(value, str) and value == value.strip() and value)
        if value is not None:
            value.encode("utf-8")  # no lone surrogates
    assert lead.message is None or len(lead.message) <= MAX_MESSAGE_CHARS
    assert lead.event_time is None or lead.event_time.utcoffset() is not None
    assert lead.source_id


@FUZZ
@given(st.text(max_size=3000))
def test_arbitrary_text(text: str) -> None:
    check(text)


HEADER_NAMES = (
    "From", "To", "Cc", "Reply-To", "Sender", "Delivered-To", "X-Original-To", "Subject", "Date",
    "Message-ID", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version",
)
header_values = st.one_of(
    st.text(max_size=120),
    st.sampled_from([
        "", "<>", "=?utf-8?b?====?=", "=?x-unknown?q?abc?=", "a@", "@b", "\"x\" <", "group: a@b, c@d;",
        "multipart/alternative; boundary=", "multipart/mixed; boundary=\"b\"", "text/html; charset=\"utf-8\"",
        "text/plain; charset*=utf-8''%E9", "text/html; charset=idna", "base64", "quoted-printable",
        "x-uuencode",
        "Mon, 32 Jan 2024 25:61:61 +9999", "attachment; filename*=''x", "zillow@leads.example.com",
        "Zillow <leads@mail.zillow.com>", "realtor@leads.example.com", "homes.com",
    ]),
)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=12),
    st.text(max_size=1500),
    st.dictionaries(st.sampled_from(["to", "provider"]), st.text(max_size=60), max_size=2),
)
def test_random_headers_and_body(
    headers: list[tuple[str, str]], body: str, attributes: dict[str, str],
) -> None:
    head = "\n".join(f"{name}: {value}" for name, value in headers)
    check(f"{head}\n\n{body}", attributes)


TAGS = ("p", "div", "td", "tr", "table", "br", "script", "style", "head", "noscript", "template", "a", "img",
        "b", "span", "iframe", "title", "pre", "!--", "![CDATA[", "!DOCTYPE", "?xml")
html_tokens = st.one_of(
    st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
    st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
    st.sampled_from([
        '<a href="mailto:x@y.example?subject=hi">', '<a href="tel:+1-206-555-0100">', '<a href="mailto:%ZZ">',
        '<img src="https://tracker.invalid/p.gif">', "-->", "]]>", "&amp;", "&#0;", "&#x110000;", "&bogus;",
        "Name:", "Email:", "Phone:", "Message:", "Comments", "First Name", "Property Address",
        "is interested in",
        "\n", " ", "<", ">", "\"", "=", "<td", "</", "<!", "<![if !mso]>", "<?php ?>",
    ]),
    st.text(max_size=30),
)


@FUZZ
@given(
    st.lists(html_tokens, max_size=120),
    st.sampled_from(["7bit", "8bit", "base64", "quoted-printable"]),
    st.sampled_from(["zillow@leads.example.com", "realtor@leads.example.com", "info@leads.example.com"]),
)
def test_random_html_bodies(tokens: list[str], cte: str, to: str) -> None:
    body = "".join(tokens)
    if cte == "base64":
        body = base64.encodebytes(body.encode("utf-8", "surrogatepass")).decode("ascii")
    text = (
        f"From: Sender <sender@example.org>\nTo: {to}\nMIME-Version: 1.0\n"
        f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: {cte}\n\n{body}"
    )
    check(text)


@pytest.mark.parametrize("depth", [1, 20, 400, 2000])
def test_deep_nesting(depth: int) -> None:
    html = "<div>" * (depth * 50) + "Phone: 555-0100" + "</div>" * (depth * 25)
    check(f"From: a@example.org\nContent-Type: text/html\n\n{html}")
    parts = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
    check(f"From: a@example.org\n{parts}Content-Type: text/plain\n\nPhone: 555-0100\n")


def rendered_emails() -> st.SearchStrategy[str]:
    names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)

    def render(source: str, first: str, last: str, message: str | None, seed: int) -> str:
        person = Person(f"{first} {last}", first, last, "+12065550100", "someone@example.org", "US", "98101",
                        "Seattle", "WA", message)
        text, _ = render_email(person, source=source, external_id=f"id-{seed}",
                               event_time=datetime(2024, 1, 1, tzinfo=UTC), rng=random.Random(seed))
        return text

    generated = st.builds(render, st.sampled_from(SOURCES), names, names, st.none() | st.text(max_size=200),
                          st.integers(0, 2**16))
    return st.one_of(generated, st.sampled_from([p.read_text("utf-8") for p in FIXTURES]))


MUTATIONS = ("delete", "insert", "duplicate", "truncate", "swap_lines", "replace_char")
NASTY_CHARS = ("\n", ":", "<", "=", "-", "\r", "\x00", "é", "\ud800")


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(rendered_emails())
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(MUTATIONS))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 400)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.one_of(st.text(max_size=40), html_tokens, header_values)) + text[i:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "truncate":
            text = text[:i]
        elif kind == "swap_lines":
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        else:
            text = text[:i] + draw(st.sampled_from(NASTY_CHARS)) + text[i + 1:]
    return text


@FUZZ
@given(mutated())
def test_mutated_emails(text: str) -> None:
    check(text)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SOURCES), st.integers(0, 2**32))
def test_rendered_emails_always_parse(source: str, seed: int) -> None:
    rng = random.Random(seed)
    person = Person("Ann Lee", "Ann", "Lee", "+12065550100", "ann.lee@example.org", "US", "98101", "Seattle", "WA",
                    "Call me.")
    text, attributes = render_email(person, source=source, external_id=f"e{seed}",
                                    event_time=datetime(2024, 3, 1, 8, 0, tzinfo=UTC), rng=rng)
    [lead] = parse(text, attributes, CONFIG)
    assert lead.email == "ann.lee@example.org" and lead.external_id == f"e{seed}"
