"""Parser for the ``inbound_email`` provider: lead e-mails forwarded from portals and people.

The payload is a raw RFC 822 message. It is parsed with the stdlib ``email`` package; headers that
the structured parser chokes on fall back to their raw text, and MIME defects never crash the parse.

Source matching follows the seed system: recipient addresses (To, Cc, Delivered-To, X-Original-To,
plus a transport ``to`` attribute) and sender addresses (From, Reply-To, Sender) are checked against
the registry rules. A matched source is verified and chooses the body template; anything else gets an
unverified ``email:<sender domain>`` source and the generic template.

The body is the HTML part when there is one, else the text/plain part. HTML goes through
libxml2's HTML parser (``lxml``, C, linear in the input: the stdlib ``html.parser`` rescans unclosed
constructs and is quadratic on hostile markup) in one streaming pass with a target, so no tree is built:
scripts, styles, the head, comments and similar are dropped, block elements become lines, and nothing the
HTML references (images, stylesheets, links) is ever fetched. Each template is a small table of
label patterns ("Phone:", "Email Address", ...) matched against those lines, with the value on the
same line or the next one (separate table cells).

Limits (``ParseConfig.limits``, docs/input-limits.md): MIME nesting and part count are checked by a linear scan
of the text before the stdlib parser runs (its boundary check is O(nesting) per line, quadratic on deep nests),
then again on the parsed tree with the header blocks (field count, field length, RFC 2047 encoded words per field:
``decode_header`` is quadratic in them). A breach is a ParseError with the limit's own error type.

The parser extracts raw text only; phones and e-mails are normalized by a later stage. A lead with
no phone and no e-mail is still returned (the normalizer dead-letters it). Error messages never
contain anything taken from the payload.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from lxml import etree

from transforms.parsers.base import (
    ParseConfig,
    ParseError,
    ParseLimits,
    RawLead,
    clean,
    limit_exceeded,
    strip_invisible,
)
from transforms.sources import SourceRegistry

PROVIDER = "inbound_email"
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
MAX_MESSAGE_CHARS = 5000
MAX_FIELD_CHARS = 500  # a longer "name" or "phone" is not a value, it is a paragraph
MAX_LINES = 20_000  # body lines scanned for labels
MAX_LINE_CHARS = 2 * MAX_MESSAGE_CHARS
MAX_SUBJECT_CHARS = 500
MAX_HREFS = 20

RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To")
SENDER_HEADERS = ("From", "Reply-To", "Sender")

SKIP_TAGS = frozenset({
    "script", "style", "head", "noscript", "template", "title", "iframe", "object", "embed", "svg",
    "math", "link", "meta", "img", "picture", "video", "audio", "canvas", "button", "select", "textarea",
})
BLOCK_TAGS = frozenset({
    "p", "div", "table", "tbody", "thead", "tfoot", "tr", "td", "th", "ul", "ol", "li", "dl", "dt", "dd",
    "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "section", "article", "header",
    "footer", "main", "nav", "aside", "address", "center", "form", "fieldset", "caption", "body", "html",
})

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMAIL_TOKEN = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
_URL = re.compile(r"^(?:https?://|www\.)", re.IGNORECASE)
_NOREPLY = re.compile(
    r"^(?:no-?reply|do-?not-?reply|donotreply|mailer-daemon|postmaster|bounces?)\b", re.IGNORECASE
)
_FOOTER = re.compile(
    r"^(?:--|__+|-{2,}\s*original message|you(?:'re| are) receiving|you received this"
    r"|this (?:e-?mail|message) was sent|sent from my|manage (?:your )?(?:preferences|notifications)"
    r"|on .{1,200} wrote:$)"
    r"|\bunsubscribe\b|\bcopyright\b|\u00a9|\ball rights reserved\b|\bprivacy policy\b",
    re.IGNORECASE,
)
_QUOTE_HEADER = re.compile(r"^on .{1,200} wrote:$", re.IGNORECASE)

US_STATES = frozenset((
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
    "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
    "PR", "VI", "GU", "AS", "MP",
))
_STATE_ZIP_TAIL = re.compile(
    r"(?:^|[\s,])(?P<state>[A-Z]{2})\.?,?\s+(?P<postal_code>\d{5})(?:-\d{4})?"
    r"\s*(?:,?\s*(?:USA?|United States))?\s*$"
)
_ZIP_TAIL = re.compile(r"(?:^|\D)(?P<postal_code>\d{5})(?:-\d{4})?\s*(?:,?\s*(?:USA?|United States))?\s*$")
_US_ADDRESS_IN_SUBJECT = re.compile(
    r"(?:[:\-\u2013]|\b(?:about|regarding|for|on))\s*"
    r"(?P<property_address>\d+[A-Za-z]?\s[^,:]{2,80},[^,:]{2,60},\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)\s*$"
)


# --- templates: small tables of label patterns -------------------------------------------------


@dataclass(frozen=True)
class Template:
    """How one portal lays out its lead e-mails.

    ``labels``: (field, pattern) pairs; a pattern must match a whole (normalized, lower-case) label.
    ``subject`` and ``lines``: patterns searched in the subject / each body line; their named groups
    are field names. A ``lines`` pattern whose group matches nothing takes the next line as value.
    ``facts``: (extra key, pattern) labels whose values go to ``extra`` (a renter's move-in date, credit
    band, income). ``relay_domains``: the portal's relay addresses, which reach the person (a Reply-To
    there is the lead's own channel, although the portal owns the domain).
    """

    name: str
    labels: tuple[tuple[str, re.Pattern[str]], ...]
    subject: tuple[re.Pattern[str], ...] = ()
    lines: tuple[re.Pattern[str], ...] = ()
    facts: tuple[tuple[str, re.Pattern[str]], ...] = ()
    relay_domains: tuple[str, ...] = ()


def _labels(*pairs: tuple[str, str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((field_name, re.compile(pattern)) for field_name, pattern in pairs)


def _patterns(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


GENERIC = Template(
    name="generic",
    labels=_labels(
        ("full_name", r"(?:full |contact |customer |client |lead |buyer |your )?name"),
        ("first_name", r"first ?name|given name|first"),
        ("last_name", r"last ?name|surname|family name|last"),
        ("email", r"(?:contact |your )?e-?mail(?: address)?"),
        ("phone", r"(?:contact |your |best |primary )?(?:phone|mobile|cell|tel|telephone)(?: number| no)?"),
        ("message", r"message|comments?|inquiry|enquiry|questions?|notes?|request|additional \w+"),
        ("property_address", r"(?:property|listing|home)(?: address)?|address|regarding|subject property"),
        ("postal_code", r"zip(?: ?code)?|postal code|post ?code|zip/postal code"),
        ("city", r"city|town"),
        ("state", r"state|province|state/province"),
        ("country", r"country"),
    ),
    subject=(_US_ADDRESS_IN_SUBJECT,),
)

ZILLOW = Template(
    name="zillow",
    labels=_labels(
        ("full_name", r"name|contact name|buyer name"),
        ("email", r"e-?mail(?: address)?"),
        ("phone", r"phone(?: number)?"),
        ("message", r"message|comments?|note"),
        ("property_address", r"property(?: address)?|listing(?: address)?|regarding|home address|address"),
    ),
    subject=_patterns(
        r"new zillow lead\s*[:\-\u2013]\s*(?P<property_address>\S.*)$",
        r"new contact from\s+(?P<full_name>\S.*)$",
        r"^(?P<full_name>[^:]{1,80}?) is requesting information (?:about|on)\s+(?P<property_address>\S.*)$",
    ),
    lines=_patterns(
        r"\bis interested in(?:\s+(?:your|the|this)\s+(?:listing|property|home)(?:\s+(?:at|on))?)?\s*:?"
        r"\s*(?P<property_address>.*)$",
        # Zillow Rentals: "Test Person asked:" / "Test Person says: I would like to schedule a tour."
        r"^(?P<full_name>[^:\d]{1,80}?) (?:asked|says|wrote)\s*:\s*(?P<message>.*)$",
        r"^new message about\s+(?P<property_address>\d.*)$",
    ),
    facts=_labels(("move_in", r"move[ -]?in(?: date)?"), ("credit_score", r"credit score"),
                  ("income", r"(?:annual |monthly )?income"), ("pets", r"pets"), ("smoker", r"smoker"),
                  ("lease_length", r"lease (?:length|term)"), ("bedrooms", r"bedrooms|beds")),
    relay_domains=("convo.zillow.com",),
)

REALTOR_COM = Template(
    name="realtor_com",
    labels=_labels(
        ("first_name", r"first ?name"),
        ("last_name", r"last ?name"),
        ("full_name", r"name|full name"),
        ("email", r"e-?mail(?: address)?"),
        ("phone", r"phone(?: number)?"),
        ("message", r"comments?|message|questions?"),
        ("property_address", r"property address|listing address|property|address"),
        ("postal_code", r"zip(?: ?code)?"),
    ),
    subject=_patterns(
        r"\blead\b[^:]{0,40}[:\-\u2013]\s*(?P<property_address>\d\S*\s.*)$",
        r"new realtor\.com lead\s*[:\-\u2013]\s*(?P<full_name>[^\d\s][^@]{0,79})$",  # "New realtor.com lead - Jo Doe"
    ),
)

TEMPLATES: dict[str, Template] = {t.name: t for t in (GENERIC, ZILLOW, REALTOR_COM)}
_ALL_LABELS = tuple(pair for t in TEMPLATES.values() for pair in (*t.labels, *t.facts))
# the second line of an address written on two ("1234 Elm St" / "Denver, CO 80202")
_CITY_STATE_ZIP_LINE = re.compile(r"^[A-Za-z][A-Za-z .'\-]{1,40},\s*[A-Z]{2}\.?\s+\d{5}(?:-\d{4})?$")


# --- small text helpers ---------------------------------------------------------------------------


def _collapse(text: str) -> str:
    return _WS.sub(" ", strip_invisible(text)).strip()


def _value(text: Any, limit: int = MAX_FIELD_CHARS) -> str | None:
    """Output text: no lone surrogates, no control characters, trimmed, capped."""
    value = clean(text)
    if value is None:
        return None
    value = _CONTROL.sub("", value.encode("utf-8", "replace").decode("utf-8"))
    return clean(value[:limit])


def _normalize_label(label: str) -> str:
    return _WS.sub(" ", label.replace("*", " ").replace("#", " ")).strip(" :.-\u2013").lower()


def _label_hit(line: str, table: Iterable[tuple[str, re.Pattern[str]]]) -> tuple[str, str] | None:
    """(field, inline value) when the line is "Label: value", "Label:" or a bare "Label"."""
    head, sep, _ = line[:60].partition(":")
    if sep:
        label, value = head, line[len(head) + 1:]
    elif len(line) <= 40:
        label, value = line, ""
    else:
        return None
    normalized = _normalize_label(label)
    if not normalized:
        return None
    for field_name, pattern in table:
        if pattern.fullmatch(normalized):
            return field_name, value.strip()
    return None


def _is_label(line: str) -> bool:
    return _label_hit(line, _ALL_LABELS) is not None


def _is_stop(line: str) -> bool:
    return not line or _is_label(line) or bool(_FOOTER.search(line))


def _usable(field_name: str, value: str) -> str | None:
    """A field value, or None when it cannot be one (a URL, a paragraph)."""
    value = value.strip()
    if not value or (field_name != "message" and (len(value) > MAX_FIELD_CHARS or _URL.match(value))):
        return None
    if field_name == "email":
        token = _EMAIL_TOKEN.search(value)
        return token.group(0).strip(".") if token else value
    return value


# --- extraction from body lines -------------------------------------------------------------------


def _message_from(lines: list[str], start: int, first: str, breaks: frozenset[int]) -> str:
    """The message value: the inline part plus following lines up to a label, blank line or footer.

    In HTML the message also ends where a new block starts once it has begun (the next row or
    paragraph), so a "Message: ..." line does not swallow the links after it.
    """
    parts = [first] if first else []
    size = len(first)
    for j in range(start, len(lines)):
        line = lines[j]
        if _is_stop(line) or size > MAX_MESSAGE_CHARS or (parts and j in breaks):
            break
        parts.append(line)
        size += len(line) + 1
    return "\n".join(parts)[:MAX_MESSAGE_CHARS]


LabelTable = tuple[tuple[str, re.Pattern[str]], ...]


def _scan_labels(body: Body, table: LabelTable, found: dict[str, str]) -> None:
    """Fill ``found`` (first occurrence wins) from "Label: value" and "Label" / "value" lines."""
    lines = body.lines
    for i, line in enumerate(lines):
        hit = _label_hit(line, table) if line else None
        if hit is None or hit[0] in found:
            continue
        field_name, value = hit
        following = lines[i + 1] if i + 1 < len(lines) else ""
        after = i + 1  # the line after the value
        if field_name == "message":
            value = _message_from(lines, i + 1, value, body.breaks)
        elif not value and following and not _is_label(following):
            value, after = following, i + 2
        if field_name == "property_address" and after < len(lines) and _CITY_STATE_ZIP_LINE.match(lines[after]):
            value = f"{value}, {lines[after]}"
        usable = _usable(field_name, value)
        if usable:
            found[field_name] = usable


def _scan_patterns(texts: list[str], patterns: tuple[re.Pattern[str], ...], found: dict[str, str]) -> None:
    """Fill ``found`` from named groups of free-text patterns; an empty group takes the next text."""
    for i, text in enumerate(texts):
        for pattern in patterns:
            match = pattern.search(text)
            if match is None:
                continue
            for field_name, value in match.groupdict().items():
                if field_name in found:
                    continue
                if not value and i + 1 < len(texts) and not _is_stop(texts[i + 1]):
                    value = texts[i + 1]
                if field_name == "message" and value:
                    value = value.strip().strip('"\u201c\u201d').strip()  # Zillow quotes the renter's words
                usable = _usable(field_name, value or "")
                if usable:
                    found[field_name] = usable


def _direct_message(lines: list[str]) -> str | None:
    """A person's own e-mail: the body up to the signature or quoted reply, quotes dropped."""
    kept: list[str] = []
    for line in lines:
        if line in ("--", "__") or _QUOTE_HEADER.match(line) or line.lower().startswith("-----original"):
            break
        if line.startswith(">") or (not line and (not kept or not kept[-1])):
            continue
        kept.append(line)
    return "\n".join(kept).strip()[:MAX_MESSAGE_CHARS] or None


def _address_parts(address: str) -> dict[str, str]:
    """US state and 5-digit postal code from the end of a property address."""
    match = _STATE_ZIP_TAIL.search(address)
    if match and match.group("state") in US_STATES:
        return {"state": match.group("state"), "postal_code": match.group("postal_code")}
    match = _ZIP_TAIL.search(address)
    return {"postal_code": match.group("postal_code")} if match else {}


# --- HTML ------------------------------------------------------------------------------------------


@dataclass
class Body:
    """Body text as lines. ``breaks``: indices of lines that start a new HTML block (not a <br>)."""

    lines: list[str]
    mailtos: list[str] = field(default_factory=list)
    tels: list[str] = field(default_factory=list)
    breaks: frozenset[int] = frozenset()


def _href_contact(href: str | None, body: Body) -> None:
    if not isinstance(href, str):
        return
    href = href.strip()
    scheme, _, rest = href.partition(":")
    if scheme.lower() == "mailto" and len(body.mailtos) < MAX_HREFS:
        address = unquote(rest.partition("?")[0]).split(",")[0].strip()
        if "@" in address:
            body.mailtos.append(address)
    elif scheme.lower() == "tel" and len(body.tels) < MAX_HREFS:
        number = unquote(rest).strip()
        if any(ch.isdigit() for ch in number):
            body.tels.append(number)


class _VisibleText:
    """The target of one streaming pass of libxml2's HTML parser: visible text in blocks, mailto:/tel: links.

    Text inside SKIP_TAGS (scripts, styles, head, embedded objects...) is dropped; comments, processing
    instructions and doctypes never reach ``data``; nothing is ever fetched (``no_network``). libxml2 closes
    every element it opened, so start and end events always balance.
    """

    def __init__(self, body: Body):
        self.body = body
        self.chunks: list[str] = []
        self.skipping = 0  # depth inside skipped elements

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        if self.skipping or tag in SKIP_TAGS:
            self.skipping += 1
            return
        if tag == "br":
            self.chunks.append("\r")  # a line break inside the block; "\n" separates blocks
        elif tag == "a":
            _href_contact(attrib.get("href"), self.body)
        elif tag in BLOCK_TAGS:
            self.chunks.append("\n")

    def end(self, tag: str) -> None:
        if self.skipping:
            self.skipping -= 1
        elif tag in BLOCK_TAGS:
            self.chunks.append("\n")

    def data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(_WS.sub(" ", data))

    def comment(self, _text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _html_body(html: str) -> Body | None:
    """Lines of visible text plus mailto:/tel: targets; None when the parser gives up."""
    body = Body([])
    target = _VisibleText(body)
    parser = etree.HTMLParser(target=target, recover=True, no_network=True, remove_comments=True, remove_pis=True)
    try:
        parser.feed(html)
        parser.close()
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    breaks: set[int] = set()
    for block in "".join(target.chunks).split("\n"):
        if len(body.lines) >= MAX_LINES:
            break  # the rest is never scanned: do not clean it up either
        lines = [line[:MAX_LINE_CHARS] for line in (_collapse(part) for part in block.split("\r")) if line]
        if lines:
            breaks.add(len(body.lines))
            body.lines.extend(lines)
    body.lines = body.lines[:MAX_LINES]
    body.breaks = frozenset(breaks)
    return body


def _text_body(text: str) -> Body:
    lines = [_collapse(line)[:MAX_LINE_CHARS] for line in text.splitlines()[:MAX_LINES]]
    return Body(lines)


# --- the message -----------------------------------------------------------------------------------


def _checked_text(text: str) -> str:
    """The text if it is at most MAX_PAYLOAD_BYTES of UTF-8; lone surrogates become '?'."""
    if len(text) > MAX_PAYLOAD_BYTES:
        raise ParseError("payload_too_large", f"e-mail exceeds {MAX_PAYLOAD_BYTES} bytes")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # the stdlib e-mail parser cannot encode lone surrogates
        data = text.encode("utf-8", "replace")
        text = data.decode("utf-8")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ParseError("payload_too_large", f"e-mail exceeds {MAX_PAYLOAD_BYTES} bytes")
    return text


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")  # the stdlib feedparser's headerRE
_BOUNDARY = re.compile(r'\bboundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;]+))', re.IGNORECASE)
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?")


def _container(content_type: str) -> tuple[str, str | None] | None:
    """('multipart', boundary) or ('message', None) for a container's Content-Type value; None for a leaf."""
    main = content_type.partition(";")[0].strip().lower()
    if main.startswith("multipart/"):
        match = _BOUNDARY.search(content_type)
        boundary = (match.group(1) if match.group(1) is not None else match.group(2)) if match else None
        return ("multipart", boundary.rstrip()) if boundary else None  # no boundary: the stdlib reads a leaf
    if main.startswith("message/") and main != "message/delivery-status":
        return ("message", None)
    return None


def _check_mime_shape(text: str, limits: ParseLimits) -> None:
    """Refuse nesting deeper than ``max_mime_depth`` or more than ``max_mime_parts`` parts, before parsing.

    One pass over the lines, following the stdlib feedparser's reading (header blocks end at a line that is not a
    header; a line ``--boundary`` of any open multipart starts a part of it and closes what was opened inside it;
    ``--boundary--`` closes it; a message/* part's body is a message with its own headers), with a dict from
    boundary to nesting level so each line costs O(1) whatever the nesting."""
    levels: dict[str, int] = {}  # open multipart boundary -> its index in ``stack``
    stack: list[str | None] = []  # open containers, outermost first (None: a message/* part)
    parts = 0
    in_headers, content_type, in_content_type = True, None, False
    for line in _LINE_BREAK.split(text):
        if in_headers:
            if line and _HEADER_LINE.match(line):
                if line[0] in " \t":
                    if in_content_type:
                        content_type += line
                        if len(content_type) > limits.max_header_chars:  # what the stdlib would keep reading
                            raise limit_exceeded("max_header_chars", "a header field is longer than "
                                                 f"{limits.max_header_chars} characters")
                elif line[:13].lower() == "content-type:":
                    in_content_type = content_type is None  # the stdlib reads the first one
                    if in_content_type:
                        content_type = line.partition(":")[2]
                else:
                    in_content_type = False
                continue
            container = _container(content_type) if content_type else None
            in_headers, content_type, in_content_type = False, None, False
            if container is not None:
                kind, boundary = container
                if boundary is not None and boundary in levels:
                    container = None  # a boundary reused inside itself: the stdlib ends the inner part there
                else:
                    stack.append(boundary)
                    if boundary is not None:
                        levels[boundary] = len(stack) - 1
                    if len(stack) > limits.max_mime_depth:
                        raise limit_exceeded("max_mime_depth", f"MIME parts nest deeper than {limits.max_mime_depth}")
                    if kind == "message":
                        parts += 1
                        if parts > limits.max_mime_parts:
                            raise limit_exceeded("max_mime_parts", f"more than {limits.max_mime_parts} MIME parts")
                        in_headers = True
            if not line:
                continue  # the blank line that ends a header block
        if not line.startswith("--") or not levels:
            continue
        mark = line[2:].rstrip(" \t")
        closing = mark not in levels and mark.endswith("--") and mark[:-2] in levels
        boundary = mark[:-2] if closing else mark
        level = levels.get(boundary)
        if level is None:
            continue
        for inner in stack[level + (0 if closing else 1):]:
            if inner is not None:
                del levels[inner]
        del stack[level + (0 if closing else 1):]
        if not closing:
            parts += 1
            if parts > limits.max_mime_parts:
                raise limit_exceeded("max_mime_parts", f"more than {limits.max_mime_parts} MIME parts")
            in_headers = True


def _check_entities(msg: Message, limits: ParseLimits) -> None:
    """The parsed message and every part within the limits: nesting, part count, and each header block's field
    count, field length and encoded words per field. Iterative, linear in the tree."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    parts = -1  # the top-level message is not a part
    while stack:
        entity, depth = stack.pop()
        parts += 1
        if parts > limits.max_mime_parts:
            raise limit_exceeded("max_mime_parts", f"more than {limits.max_mime_parts} MIME parts")
        items = entity.raw_items()
        if len(entity) > limits.max_headers:
            raise limit_exceeded("max_headers", f"a header block has more than {limits.max_headers} fields")
        for name, value in items:
            value = str(value)
            if len(str(name)) + len(value) > limits.max_header_chars:
                raise limit_exceeded("max_header_chars",
                                     f"a header field is longer than {limits.max_header_chars} characters")
            if "=?" in value and len(_ENCODED_WORD.findall(value)) > limits.max_encoded_words:
                raise limit_exceeded("max_encoded_words",
                                     f"a header field has more than {limits.max_encoded_words} encoded words")
        payload = entity.get_payload()
        if isinstance(payload, list):
            if depth >= limits.max_mime_depth:
                raise limit_exceeded("max_mime_depth", f"MIME parts nest deeper than {limits.max_mime_depth}")
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))


def _read_message(text: str) -> Message:
    """The parsed message, with the lenient compat32 policy (faster than the default policy; headers are
    decoded explicitly by ``_decoded``; figures: docs/performance.md, "E-mail parser: the compat32 policy")."""
    try:
        return email.message_from_string(text, policy=email.policy.compat32)
    except RecursionError:
        raise ParseError("invalid_email", "MIME structure nests too deeply") from None
    except Exception:
        raise ParseError("invalid_email", "the text cannot be parsed as an e-mail") from None


def _decoded(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded; undecodable ones are kept as they are."""
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # malformed encoded words (unknown charset, bad base64): the raw text
        return text


def _header_values(msg: Message, name: str) -> list[str]:
    """All raw values of a header, as text."""
    try:
        return [str(v) for v in msg.get_all(name) or []]
    except Exception:  # malformed headers: fall back to the raw text
        wanted = name.lower()
        return [str(value) for key, value in msg.raw_items() if isinstance(key, str) and key.lower() == wanted]


def _header_text(msg: Message, name: str) -> str | None:
    for value in _header_values(msg, name):
        try:
            text = _collapse(_decoded(value))
        except Exception:  # an unprintable header value is skipped
            continue
        if text:
            return text
    return None


def _parse_addresses(value: Any) -> list[tuple[str, str]]:
    """(display name, address) pairs of one header value; only entries that contain an '@'."""
    try:
        pairs = email.utils.getaddresses([str(value)])
    except Exception:  # an address list that does not parse
        pairs = []
    out = []
    for name, address in pairs:
        address = _collapse(str(address)).strip("<>")
        if "@" in address and len(address) <= 320:
            out.append((_collapse(_decoded(name)), address))
    return out


def _addresses(msg: Message, names: Iterable[str]) -> list[tuple[str, str]]:
    return [pair for name in names for value in _header_values(msg, name) for pair in _parse_addresses(value)]


def _attribute_addresses(attributes: Mapping[str, str]) -> list[tuple[str, str]]:
    try:
        value = attributes.get("to")
    except Exception:  # a Mapping that misbehaves is no reason to fail the parse
        return []
    return _parse_addresses(str(value)) if value else []


def _event_time(msg: Message, naive_timezone: str) -> datetime | None:
    raw = _header_text(msg, "Date")
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(naive_timezone))
        return parsed.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, IndexError, AttributeError):
        return None


def _external_id(msg: Message) -> str | None:
    raw = _header_text(msg, "Message-ID")
    return _value(raw.strip().strip("<>")) if raw else None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:
        return False


def _decode_part(part: Message) -> str:
    """A text part's content, decoded from its transfer encoding and charset (errors replaced)."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return ""
    try:
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    except Exception:
        cte = ""
    if cte not in ("base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"):
        return payload
    try:
        data = part.get_payload(decode=True)
    except Exception:  # undecodable transfer encoding: use the text as it stands
        return payload
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError, TypeError):
        return data.decode("utf-8", errors="replace")


def _text_parts(msg: Message) -> tuple[str | None, str | None]:
    """(first HTML part, first text/plain part), skipping attachments; iterative (the tree is within the limits:
    ``_check_entities``)."""
    html: str | None = None
    plain: str | None = None
    stack: list[Message] = [msg]
    while stack and (html is None or plain is None):
        part = stack.pop()
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
            continue
        if _is_attachment(part):
            continue
        content_type = _content_type(part)
        if content_type == "text/html" and html is None:
            html = _decode_part(part)
        elif content_type == "text/plain" and plain is None:
            plain = _decode_part(part)
    return html, plain


def _body(msg: Message) -> Body:
    html, plain = _text_parts(msg)
    if html is not None and html.strip():
        body = _html_body(html)
        if body is not None and body.lines:
            return body
    return _text_body(plain or "")


# --- contact fallbacks -----------------------------------------------------------------------------


def _is_portal(registry: SourceRegistry, address: str) -> bool:
    return registry.match_email([], [address]) is not None


def _personal(address: str, registry: SourceRegistry, recipient_domains: set[str]) -> bool:
    """An address that can be the lead's own: not a portal's, not ours, not a no-reply robot."""
    local, _, domain = address.lower().rpartition("@")
    return bool(local) and not _NOREPLY.match(local) and domain not in recipient_domains and not _is_portal(
        registry, address
    )


def _fill_contacts(
    found: dict[str, str],
    body: Body,
    reply_to: list[tuple[str, str]],
    sender: tuple[str, str] | None,
    registry: SourceRegistry,
    recipient_domains: set[str],
) -> None:
    """Missing e-mail/phone/name from mailto:/tel: links, then Reply-To, then (unmatched only) From."""
    if "email" not in found:
        for address in body.mailtos:
            if _personal(address, registry, recipient_domains):
                found["email"] = address
                break
    if "phone" not in found and body.tels:
        found["phone"] = body.tels[0]
    has_name = any(k in found for k in ("full_name", "first_name", "last_name"))
    candidates = list(reply_to) + ([sender] if sender else [])
    for display_name, address in candidates:
        if not _personal(address, registry, recipient_domains):
            continue
        if "email" not in found:
            found["email"] = address
        if not has_name and display_name and "@" not in display_name:
            found["full_name"] = display_name
        break


# --- entry point -----------------------------------------------------------------------------------


def parse(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """One RawLead from a raw e-mail; ParseError('payload_too_large' | 'invalid_email' | a limit's) otherwise."""
    if not isinstance(text, str):
        raise ParseError("invalid_email", "the payload is not text")
    text = _checked_text(text)
    _check_mime_shape(text, config.limits)
    msg = _read_message(text)
    _check_entities(msg, config.limits)
    froms = _addresses(msg, ("From",))
    body = _body(msg)
    has_header_block = any(True for _ in msg.raw_items())
    has_from = bool(froms) or bool(_header_text(msg, "From"))
    if not has_header_block or (not has_from and not any(body.lines)):
        raise ParseError("invalid_email", "the text is not an e-mail (no From header and no body)")

    recipients = _addresses(msg, RECIPIENT_HEADERS) + _attribute_addresses(attributes)
    senders = _addresses(msg, SENDER_HEADERS)
    registry = config.registry
    source = registry.match_email([a for _, a in recipients], [a for _, a in senders])
    from_address = froms[0][1] if froms else (senders[0][1] if senders else None)
    template = TEMPLATES.get((source.email_template if source else None) or "generic", GENERIC)

    found: dict[str, str] = {}
    _scan_labels(body, template.labels, found)
    if template is not GENERIC:
        _scan_labels(body, GENERIC.labels, found)
    _scan_patterns(body.lines, template.lines, found)
    subject = (_header_text(msg, "Subject") or "")[:MAX_SUBJECT_CHARS]
    if subject:
        _scan_patterns([subject], template.subject + GENERIC.subject, found)
    recipient_domains = {a.lower().rpartition("@")[2] for _, a in recipients}
    reply_to = _addresses(msg, ("Reply-To",))
    relayed = [(n, a) for n, a in reply_to if a.lower().rpartition("@")[2] in template.relay_domains]
    if relayed and "email" not in found:
        found["email"] = relayed[0][1]
        if relayed[0][0] and "@" not in relayed[0][0] and not any(
                k in found for k in ("full_name", "first_name", "last_name")):
            found["full_name"] = relayed[0][0]
    _fill_contacts(
        found, body, reply_to, None if source else (froms[0] if froms else None), registry, recipient_domains,
    )
    facts: dict[str, str] = {}
    if template.facts:
        _scan_labels(body, template.facts, facts)
    if "message" not in found and source is None:
        direct = _direct_message(body.lines)
        if direct:
            found["message"] = direct
    if "property_address" in found:
        for key, value in _address_parts(found["property_address"]).items():
            found.setdefault(key, value)

    return [RawLead(
        provider=PROVIDER,
        external_id=_external_id(msg),
        event_time=_event_time(msg, config.naive_timezone),
        full_name=_value(found.get("full_name")),
        first_name=_value(found.get("first_name")),
        last_name=_value(found.get("last_name")),
        phone=_value(found.get("phone")),
        email=_value(found.get("email")),
        country=_value(found.get("country")),
        postal_code=_value(found.get("postal_code")),
        city=_value(found.get("city")),
        state=_value(found.get("state")),
        property_address=_value(found.get("property_address")),
        message=_value(found.get("message"), MAX_MESSAGE_CHARS),
        source_id=source.source_id if source else SourceRegistry.unverified_email_source_id(from_address),
        source_verified=source is not None,
        extra={**{k: v[:MAX_FIELD_CHARS] for k, v in facts.items() if v.strip("-\u2013 ")}, "template": template.name},
    )]
