"""Hostile e-mail bodies: the HTML shapes that made the stdlib tokenizer quadratic, at any size, beside an
ordinary body of the same size (issue 16; the tests assert their outcomes, ``make bench`` times them)."""

from __future__ import annotations

import base64
import json

ORDINARY = "ordinary"
# shape -> (prefix, unit repeated to fill the size)
SHAPES: dict[str, tuple[str, str]] = {
    "open_tags": ("", "<a"),
    "end_tag_openers": ("", "</"),
    "processing_instructions": ("", "<?"),
    "unclosed_svg": ("<svg>", "</p></div>x"),
    "stray_end_tags": ("", "</p></div>x"),
    ORDINARY: ("", "<p>Name: John Smith<br>Phone: 555-1234</p>"),
}
CONTACT = "<p>Name: Jane Doe</p><p>Phone: +1 212 555 0001</p>"


def html_of(shape: str, size: int) -> str:
    """About ``size`` characters of ``shape``, ending with a contact block a parser should still reach."""
    prefix, unit = SHAPES[shape]
    return prefix + unit * max(0, (size - len(prefix) - len(CONTACT)) // len(unit)) + CONTACT


def email_of(html: str) -> str:
    return ("From: Leads <leads@example.org>\r\nTo: agent@example.com\r\nSubject: New lead\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n" + html)


# --- every parser's worst shapes (issue 16, item 8), each at any size beside an ordinary payload of that size -------
# parser -> shape -> (builder(size) -> payload text of about ``size`` bytes, outcome near 1 MB: "lead" or an error
# type). The "ordinary" shape of each parser is a real lead made long the way a real one can be (a long message, many
# rows); the others are what an attacker would send. ``make bench`` times them (pipelines.dev.parse_bench), the unit
# tests assert the outcomes at 960 KB.

PHONE = "+12125550001"
PROSE = "I would like to see the house on Saturday, is the garden south facing? "


def _fill(size: int, fixed: int, unit: str) -> int:
    """How many ``unit`` fit in ``size`` beside ``fixed`` bytes."""
    return max(1, (size - fixed) // max(1, len(unit.encode())))


def _json_with(lead: dict, key: str, raw: str) -> str:
    """``lead`` as JSON with one more member ``key`` whose value is the raw JSON text ``raw``."""
    head = json.dumps(lead)
    return head[:-1] + f', "{key}": {raw}}}'


def _nested(size: int, fixed: int, depth: int) -> str:
    """Raw JSON: arrays nested ``depth`` deep, as many siblings as fit."""
    unit = "[" * depth + "1" + "]" * depth + ","
    return "[" + unit * _fill(size, fixed + 2, unit) + "1]"


def _deep(size: int) -> str:
    return "[" * (size // 2) + "]" * (size // 2)


def _many_keys(size: int, fixed: int) -> str:
    return "{" + ", ".join(f'"k{i}": 1' for i in range(_fill(size, fixed, '"k00000": 1, '))) + "}"


def _escaped(size: int, fixed: int) -> str:
    unit = "caf\\u00e9 \\\"quoted\\\"\\n\\ud83d\\ude00 "
    return '"' + unit * _fill(size, fixed, unit) + '"'


def _meta_lead(answers: list[dict] | None = None) -> dict:
    return {"id": "L1", "created_time": "2026-11-20T14:03:22+0000", "form_id": "F1",
            "field_data": [{"name": "full_name", "values": ["Jane Doe"]},
                           {"name": "phone_number", "values": [PHONE]}] + (answers or [])}


def _meta_ordinary(size: int) -> str:
    base = len(json.dumps(_meta_lead([{"name": "your_message", "values": [""]}])))
    return json.dumps(_meta_lead([{"name": "your_message", "values": [PROSE * _fill(size, base, PROSE)]}]))


def _meta_answers(size: int) -> str:
    unit = '{"name": "q00000", "values": ["yes"]}, '
    n = _fill(size, len(json.dumps(_meta_lead())), unit)
    return json.dumps(_meta_lead([{"name": f"q{i}", "values": ["yes"]} for i in range(n)]))


def _meta_values(size: int) -> str:
    n = _fill(size, len(json.dumps(_meta_lead())), '"yes", ')
    return json.dumps(_meta_lead([{"name": "your_question", "values": ["yes"] * n}]))


def _google_lead(columns: list[dict] | None = None) -> dict:
    return {"lead_id": "G1", "api_version": "1.0", "form_id": 123, "campaign_id": 456, "google_key": "k",
            "user_column_data": [{"column_id": "FULL_NAME", "string_value": "Jane Doe"},
                                 {"column_id": "PHONE_NUMBER", "string_value": PHONE}] + (columns or [])}


def _google_ordinary(size: int) -> str:
    base = len(json.dumps(_google_lead([{"column_id": "MESSAGE", "string_value": ""}])))
    return json.dumps(_google_lead([{"column_id": "MESSAGE", "string_value": PROSE * _fill(size, base, PROSE)}]))


def _google_columns(size: int) -> str:
    unit = '{"column_id": "Q00000", "string_value": "yes", "column_name": "Q00000"}, '
    n = _fill(size, len(json.dumps(_google_lead())), unit)
    return json.dumps(_google_lead([{"column_id": f"Q{i}", "string_value": "yes", "column_name": f"Q{i}"}
                                    for i in range(n)]))


KNOWLARITY_LEAD = {"uuid": "K1", "customer_number": "+919876543210", "start_time": "2026-11-20 19:33:22+05:30",
                   "call_duration": 42, "call_type": "incoming", "Call_Status": "Connected"}
API_LEAD = {"external_id": "A1", "full_name": "Jane Doe", "phone": PHONE, "email": "jane@example.org"}


def _long_text_member(lead: dict, key: str):
    def build(size: int) -> str:
        base = len(json.dumps({**lead, key: ""}))
        return json.dumps({**lead, key: PROSE * _fill(size, base, PROSE)})
    return build


def _json_shapes(lead: dict, ordinary, extra_key: str) -> dict:
    """The shapes every JSON parser shares, around one of its leads."""
    fixed = len(json.dumps(lead)) + len(extra_key) + 6
    return {
        ORDINARY: ordinary,
        "deep_nesting": lambda size: _json_with(lead, extra_key, _deep(size - fixed)),
        "nesting_at_the_limit": lambda size: _json_with(lead, extra_key, _nested(size, fixed, 62)),
        "many_keys": lambda size: _json_with(lead, extra_key, _many_keys(size, fixed)),
        "escaped_strings": lambda size: _json_with(lead, extra_key, _escaped(size, fixed)),
        "long_number_list": lambda size: _json_with(
            lead, extra_key, "[" + ", ".join(["12345678901234567890.5e-3"] * _fill(size, fixed, "1234567890123456789"
                                                                                       "0.5e-3, ")) + "]"),
    }


def _form(fields: str, size: int, unit: str, key: str = "Body") -> str:
    return fields + f"&{key}=" + unit * _fill(size, len(fields) + len(key) + 2, unit)


SMS = "MessageSid=SM1&AccountSid=AC1&From=%2B12125550001&To=%2B12125550199&FromCity=NEW+YORK"
VOICE = "CallSid=CA1&AccountSid=AC1&From=%2B12125550001&To=%2B12125550199&CallStatus=ringing"


def _form_shapes(fields: str) -> dict:
    return {
        ORDINARY: lambda size: _form(fields, size, "I+would+like+to+see+the+house+on+Saturday%2C+thanks+"),
        "many_fields": lambda size: fields + "&a=b" * _fill(size, len(fields), "&a=b"),
        "many_separators": lambda size: fields + "&" * _fill(size, len(fields), "&"),
        "percent_escapes": lambda size: _form(fields, size, "%F0%9F%98%80%25"),
        "long_key": lambda size: fields + "&" + "k" * _fill(size, len(fields) + 3, "k") + "=v",
    }


CSV_HEADER = "name,phone,email,message\n"


def _csv_ordinary(size: int) -> str:
    row = f"Jane Doe,{PHONE},jane@example.org,call me after five\n"
    return CSV_HEADER + row * _fill(size, len(CSV_HEADER), row)


def _csv_wide(size: int) -> str:
    header = "phone," + ",".join(f"c{i}" for i in range(498)) + "\n"
    row = PHONE + "," + ",".join(["x"] * 498) + "\n"
    return header + row * _fill(size, len(header), row)


def _csv_quoted(size: int) -> str:
    cell = '"' + 'a ""quoted"" line\n' * 400 + '"'  # 8 KB cells: under the csv module's field limit
    row = f"Jane,{PHONE},j@example.org,{cell}\n"
    return CSV_HEADER + row * _fill(size, len(CSV_HEADER), row)


CSV_SHAPES = {
    ORDINARY: _csv_ordinary,
    "many_rows": lambda size: "phone\n" + f"{PHONE}\n" * _fill(size, 6, f"{PHONE}\n"),
    "many_columns_at_the_limit": _csv_wide,
    "too_many_columns": lambda size: CSV_HEADER + PHONE + "," * _fill(size, len(CSV_HEADER) + 20, ",") + "\n",
    "quoted_multiline_cells": _csv_quoted,
    "blank_rows": lambda size: CSV_HEADER + f"Jane,{PHONE},,\n" + ",,,\n" * _fill(size, 60, ",,,\n"),
    "one_huge_cell": lambda size: CSV_HEADER + f"Jane,{PHONE},," + "x" * _fill(size, 60, "x") + "\n",
}

MAIL_HEAD = "From: Jane Doe <jane@example.org>\r\nTo: agent@example.com\r\nSubject: New lead\r\nMIME-Version: 1.0\r\n"


def _mail_nested(depth: int, size: int) -> str:
    head = MAIL_HEAD + "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
                               for i in range(depth)) + "Content-Type: text/plain\r\n\r\nPhone: +1 212 555 0001\r\n"
    tail = "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return head + "a\r\n" * _fill(size, len(head) + len(tail), "a\r\n") + tail


def _mail_parts(parts: int, size: int) -> str:
    text = "Lorem ipsum dolor sit amet.\r\n"
    per_part = max(0, (size // parts - 40) // len(text))
    body = "".join(f"--b\r\n\r\nPhone: +1 212 555 0001\r\n{text * per_part}" for _ in range(parts))
    return MAIL_HEAD + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + "--b--\r\n"


def _mail_headers(count: int, size: int) -> str:
    value = "v" * max(1, min(30_000, (size - 200) // count - 16))
    return MAIL_HEAD + "".join(f"X-Extra-{i}: {value}\r\n" for i in range(count)) + "\r\nPhone: +1 212 555 0001\r\n"


def _mail_addresses(size: int) -> str:
    unit = "Some One <some.one@example.net>, "
    to = unit * min(900, _fill(size, 200, unit))
    return (MAIL_HEAD.replace("To: agent@example.com", f"To: agent@example.com, {to}agent2@example.com")
            + "\r\nPhone: +1 212 555 0001\r\n" + PROSE * _fill(size, len(to) + 200, PROSE))


def _mail_recipient_headers(size: int) -> str:
    """Hundreds of To: headers, each under the header limit, full of encoded display names and addresses."""
    unit = "=?utf-8?q?J=C3=A9?= <a@example.net>, "
    per_header = max(1, (size // 480) // len(unit))
    return (MAIL_HEAD + "".join("To: " + unit * per_header + "x@example.net\r\n" for _ in range(min(480, size // 100)))
            + "\r\nPhone: +1 212 555 0001\r\n")


def _mail_encoded(words: int, size: int) -> str:
    subject = " ".join(["=?utf-8?q?caf=C3=A9?="] * words)
    head = MAIL_HEAD.replace("Subject: New lead", f"Subject: {subject}") + "\r\nPhone: +1 212 555 0001\r\n"
    return head + PROSE * _fill(size, len(head), PROSE)


def _mail_base64_html(size: int) -> str:
    html = html_of(ORDINARY, size * 72 // 100)  # base64 is 4/3 of it, with a line break every 76 characters
    data = base64.encodebytes(html.encode()).decode().replace("\n", "\r\n")
    return MAIL_HEAD + "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + data


def _mail_soft_breaks(size: int) -> str:
    """Quoted-printable text of soft line breaks and escapes."""
    unit = "=C3=A9=\r\n"
    return (MAIL_HEAD + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + "Phone: +1 212 555 0001\r\n" + unit * _fill(size, 300, unit))


def _mail_plain_lines(unit: str):
    return lambda size: MAIL_HEAD + "\r\nPhone: +1 212 555 0001\r\n" + unit * _fill(size, 200, unit)


def _html_email(shape: str):
    return lambda size: email_of(html_of(shape, size))


EMAIL_SHAPES = {
    ORDINARY: lambda size: email_of(html_of(ORDINARY, size)),
    **{f"html_{shape}": _html_email(shape) for shape in SHAPES if shape != ORDINARY},
    "mime_depth_at_the_limit": lambda size: _mail_nested(12, size),
    "mime_too_deep": lambda size: _mail_nested(min(500, size // 100), size),
    "mime_parts_at_the_limit": lambda size: _mail_parts(min(255, size // 100), size),
    "mime_too_many_parts": lambda size: _mail_parts(min(2000, size // 40), size),
    "headers_at_the_limit": lambda size: _mail_headers(min(495, size // 40), size),
    "many_addresses": _mail_addresses,
    "many_recipient_headers": _mail_recipient_headers,
    "encoded_words_at_the_limit": lambda size: _mail_encoded(100, size),
    "plain_short_lines": _mail_plain_lines("a\r\n"),
    "plain_label_lines": _mail_plain_lines("Message:\r\nName:\r\n"),
    "plain_long_lines": _mail_plain_lines("x" * 20_000 + "\r\n"),
    "base64_html_body": _mail_base64_html,
    "quoted_printable_soft_breaks": _mail_soft_breaks,
}

PARSER_SHAPES: dict[str, dict] = {
    "meta_lead_ads": {**_json_shapes(_meta_lead(), _meta_ordinary, "adset_name"),
                      "many_answers": _meta_answers, "many_values": _meta_values},
    "google_ads_lead_form": {**_json_shapes(_google_lead(), _google_ordinary, "gcl_id"),
                             "many_columns": _google_columns},
    "knowlarity_call": _json_shapes(KNOWLARITY_LEAD, _long_text_member(KNOWLARITY_LEAD, "notes"), "notes"),
    "twilio_sms": _form_shapes(SMS),
    "twilio_voice": _form_shapes(VOICE),
    "api": _json_shapes(API_LEAD, _long_text_member(API_LEAD, "message"), "source"),
    "csv_upload": CSV_SHAPES,
    "inbound_email": EMAIL_SHAPES,
}
