"""Hostile input (issue 16): every ParseLimits limit, at the limit a lead, one over it a dead letter with the limit's
own error type and the original payload; and the outcome of large hostile payloads under the default limits
(docs/input-limits.md)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from transforms.messages import InputMessage
from transforms.parse import ParseDoFn, RejectedMessage, parse_message
from transforms.parsers import inbound_email
from transforms.parsers.base import LIMIT_ERRORS, ParseConfig, ParseError, ParseLimits
from transforms.parsers.registry import parse_payload
from transforms.sources import SourceRegistry

REGISTRY = SourceRegistry.from_csv(None)
PHONE = "+12125550001"
HEAD = "From: Jane Doe <jane@example.org>\nTo: agent@example.com\nSubject: New lead\nMIME-Version: 1.0\n"


def meta(answers: int = 2) -> str:
    fields = [{"name": "phone_number", "values": [PHONE]}] + [
        {"name": f"q{i}", "values": ["yes"]} for i in range(answers - 1)]
    return json.dumps({"id": "l1", "field_data": fields})


def nested_email(depth: int) -> str:
    """``depth`` multiparts inside each other, a text part innermost: ``depth`` levels, ``depth`` parts."""
    text = HEAD
    for i in range(depth):
        text += f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
    text += f"Content-Type: text/plain\n\nPhone: {PHONE}\n"
    for i in reversed(range(depth)):
        text += f"--b{i}--\n"
    return text


def forwarded_email(depth: int) -> str:
    """``depth`` message/rfc822 parts inside each other (a forward of a forward ...), no boundaries at all."""
    return HEAD + "Content-Type: message/rfc822\n\nFrom: x@example.org\n" * depth + f"\nPhone: {PHONE}\n"


def flat_email(parts: int) -> str:
    body = "".join(f"--b\nContent-Type: text/plain\n\nPhone: {PHONE}\n" for _ in range(parts))
    return HEAD + 'Content-Type: multipart/alternative; boundary="b"\n\n' + body + "--b--\n"


def headers_email(extra: int) -> str:
    return HEAD + "".join(f"X-Extra-{i}: v\n" for i in range(extra)) + f"\nPhone: {PHONE}\n"


LONG_SUBJECT = "Subject: " + "a" * 300
SUBJECT_CHARS = len("Subject") + 300  # name and value, the stdlib's raw value has no leading space


def encoded_email(words: int) -> str:
    subject = " ".join(["=?utf-8?q?caf=C3=A9?="] * words)
    return HEAD.replace("Subject: New lead", f"Subject: {subject}") + f"\nPhone: {PHONE}\n"


# limit -> (provider, payload whose measure is exactly ``measure``, measure)
AT_THE_LIMIT: dict[str, tuple[str, str, int]] = {
    "max_json_depth": ("meta_lead_ads", meta(), 4),  # {  [  {  [
    "max_json_containers": ("meta_lead_ads", meta(), 1 + 1 + 2 * 2),  # the lead, field_data, each answer and values
    "max_json_keys": ("meta_lead_ads", meta(3), 2 + 3 * 2),  # id, field_data; name and values per answer
    "max_csv_rows": ("csv_upload", f"phone\n{PHONE}\n{PHONE}\n{PHONE}\n", 3),
    "max_csv_columns": ("csv_upload", f"phone,a,b\n{PHONE},x,y\n", 3),
    "max_form_fields": ("twilio_sms", "MessageSid=SM1&From=%2B12125550001&Body=hi", 3),
    "max_form_chars": ("twilio_sms", "MessageSid=SM1&From=%2B12125550001&Body=hi", 42),
    "max_mime_depth": ("inbound_email", nested_email(3), 3),
    "max_mime_parts": ("inbound_email", flat_email(4), 4),
    "max_headers": ("inbound_email", headers_email(3), 4 + 3),
    "max_header_chars": ("inbound_email", HEAD.replace("Subject: New lead", LONG_SUBJECT) + f"\nPhone: {PHONE}\n",
                         SUBJECT_CHARS),
    "max_encoded_words": ("inbound_email", encoded_email(5), 5),
}


def config(**limits: int) -> ParseConfig:
    return ParseConfig(registry=REGISTRY, limits=ParseLimits(**limits))


def test_every_limit_has_an_error_type_and_a_case_here():
    names = [f.name for f in dataclasses.fields(ParseLimits)]
    assert sorted(LIMIT_ERRORS) == sorted(names) == sorted(AT_THE_LIMIT)
    assert len(set(LIMIT_ERRORS.values())) == len(LIMIT_ERRORS)


@pytest.mark.parametrize("limit", sorted(AT_THE_LIMIT))
def test_at_the_limit_a_lead_one_over_its_own_dead_letter(limit):
    provider, text, measure = AT_THE_LIMIT[limit]
    for attributes in ({"provider": provider}, {}):  # named, and recognised by its shape
        found, leads = parse_payload(text, attributes, config(**{limit: measure}))
        assert found == provider and leads and all(lead.phone == PHONE for lead in leads)
        with pytest.raises(ParseError) as e:
            parse_payload(text, attributes, config(**{limit: measure - 1}))
        assert e.value.error_type == LIMIT_ERRORS[limit]
        assert PHONE not in e.value.message


@pytest.mark.parametrize("limit", sorted(AT_THE_LIMIT))
def test_a_breach_is_a_parse_dead_letter_carrying_the_original_payload(limit):
    provider, text, measure = AT_THE_LIMIT[limit]
    fn = ParseDoFn(1_000_000, None, None, ParseLimits(**{limit: measure - 1}))
    fn.setup()
    (out,) = fn.process(InputMessage("m1", text.encode(), {"provider": provider}))
    dead = out.value
    assert (dead.stage, dead.error_type, dead.provider) == ("parse", LIMIT_ERRORS[limit], provider)
    assert dead.payload == text and not dead.payload_truncated


def test_limits_must_be_positive_integers():
    with pytest.raises(ValueError):
        ParseLimits(max_mime_depth=0)
    with pytest.raises(ValueError):
        ParseLimits(max_json_keys=1.5)


def test_forwards_nested_inside_each_other_count_as_depth():
    text = forwarded_email(3)
    assert parse_payload(text, {}, config(max_mime_depth=3))[1][0].phone == PHONE
    with pytest.raises(ParseError) as e:
        parse_payload(text, {}, config(max_mime_depth=2))
    assert e.value.error_type == "mime_too_deep"


@pytest.mark.parametrize("depth", [13, 500, 5000])
def test_deep_mime_is_refused_by_the_scan_before_the_stdlib_parser_reads_it(depth, monkeypatch):
    def never(_text):
        raise AssertionError("the stdlib parser ran")

    monkeypatch.setattr(inbound_email, "_read_message", never)
    with pytest.raises(ParseError) as e:
        inbound_email.parse(nested_email(depth), {}, config())
    assert e.value.error_type == "mime_too_deep"


def test_a_boundary_inside_a_leaf_of_another_boundary_does_not_confuse_the_scan():
    # an inner part's text may hold lines that look like boundaries of nothing open; they are text
    text = flat_email(2).replace(f"Phone: {PHONE}\n", f"Phone: {PHONE}\n--not-a-boundary\n--b-x\n", 1)
    assert inbound_email.parse(text, {}, config(max_mime_parts=2))[0].phone == PHONE


# --- large hostile payloads under the default limits (near the 1 MB payload limit) ---------------------------------

def _filler_lines(n: int) -> str:
    return "a\n" * n


LARGE: list[tuple[str, str, str, str]] = [
    # (case, provider, payload, expected error type)
    ("mime_500_deep_with_900kb_of_lines", "inbound_email",
     nested_email(500).replace("Phone:", _filler_lines(400_000) + "Phone:"), "mime_too_deep"),
    ("mime_19000_parts", "inbound_email", flat_email(19_000), "mime_too_many_parts"),
    ("forwards_19000_deep", "inbound_email", forwarded_email(19_000), "mime_too_deep"),
    ("headers_50000", "inbound_email", headers_email(50_000), "too_many_headers"),
    ("subject_900kb", "inbound_email", HEAD.replace("Subject: New lead", "Subject: " + "a " * 450_000) + "\nhi\n",
     "header_too_long"),
    ("folded_subject_900kb", "inbound_email",
     HEAD.replace("Subject: New lead", "Subject: x" + "\n x" * 300_000) + "\nhi\n", "header_too_long"),
    ("folded_content_type_900kb", "inbound_email",
     HEAD + "Content-Type: multipart/mixed;" + "\n x=y;" * 150_000 + ' boundary="b"\n\n--b\n\nhi\n--b--\n',
     "header_too_long"),
    ("encoded_words_1000", "inbound_email", encoded_email(1000), "too_many_encoded_words"),
    ("json_keys_70000", "api", json.dumps({f"k{i}": 1 for i in range(70_000)}), "json_too_many_keys"),
    ("json_300000_deep", "api", "[" * 300_000 + "]" * 300_000, "json_too_deep"),
    ("json_deep_after_many_containers", "api", "[" + "[]," * 20_000 + "[" * 100 + "]" * 100 + "]",
     "json_too_many_containers"),
    ("json_62_deep_many_times", "meta_lead_ads", meta()[:-1] + ', "x": [' + ",".join(["[" * 62 + "]" * 62] * 7000)
     + "]}", "json_too_many_containers"),
    ("json_unterminated_escaped_quotes", "api", '{"a": "' + '\\"' * 300_000, "invalid_json"),
    ("meta_answers_25000", "meta_lead_ads", meta(25_000), "json_too_many_containers"),
    ("csv_60000_rows", "csv_upload", "phone\n" + f"{PHONE}\n" * 60_000, "csv_too_many_rows"),
    ("csv_300000_columns", "csv_upload", "phone\n" + PHONE + "," * 300_000 + "\n", "csv_too_many_columns"),
    ("form_5000_fields", "twilio_sms", "MessageSid=SM1&From=%2B1&" + "&".join(["a=b"] * 5_000),
     "form_too_many_fields"),
    ("form_960kb_of_escapes", "twilio_sms", "MessageSid=SM1&From=%2B1&Body=" + "%F0%9F%98%80" * 80_000,
     "form_too_large"),
]


@pytest.mark.parametrize(("case", "provider", "text", "error_type"), LARGE, ids=[c[0] for c in LARGE])
def test_a_large_hostile_payload_ends_as_its_limits_dead_letter(case, provider, text, error_type):
    assert len(text.encode()) <= 1_000_000, case
    msg = InputMessage(case, text.encode(), {"provider": provider})
    with pytest.raises(RejectedMessage) as e:
        parse_message(msg, config(), 1_000_000)
    assert e.value.error_type == error_type


def test_large_ordinary_payloads_under_the_limits_are_leads():
    upload = "name,phone\n" + "".join(f"P {i},+1212555{i % 10000:04d}\n" for i in range(45_000))
    units = parse_message(InputMessage("u", upload.encode(), {"provider": "csv_upload"}), config(), 1_000_000)
    assert len(units) == 45_000
    body = "<p>Phone: +1 212 555 0001</p>" + "<p>Lorem ipsum dolor sit amet.</p>" * 28_000
    (unit,) = parse_message(InputMessage("e", (HEAD + "Content-Type: text/html\n\n" + body).encode(), {}),
                            config(), 1_000_000)
    assert unit.raw.phone == "+1 212 555 0001"
    (unit,) = parse_message(InputMessage("m", meta(1200).encode(), {}), config(), 1_000_000)
    assert unit.raw.phone == PHONE and len(unit.raw.extra) == 1199



# --- the scan before parsing and the parsed tree agree (differential, on generated well-formed MIME) ----------------

def _tree():
    from hypothesis import strategies as st

    leaf = st.just(("leaf",))
    return st.recursive(leaf, lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=4).map(lambda c: ("multipart", *c)),
        kids.map(lambda c: ("message", c))), max_leaves=25)


def _render(node, counter: list[int]) -> str:
    kind = node[0]
    if kind == "leaf":
        return "Content-Type: text/plain\n\nhello\n"
    if kind == "message":
        return "Content-Type: message/rfc822\n\nFrom: x@example.org\n" + _render(node[1], counter)
    counter[0] += 1
    b = f"b{counter[0]}"
    return (f'Content-Type: multipart/mixed; boundary="{b}"\n\n'
            + "".join(f"--{b}\n" + _render(child, counter) for child in node[1:]) + f"--{b}--\n")


def _shape(node) -> tuple[int, int]:
    """(nesting of containers, parts below this node)."""
    if node[0] == "leaf":
        return 0, 0
    kids = [_shape(child) for child in node[1:]]
    return 1 + max(d for d, _ in kids), sum(1 + p for _, p in kids)


def test_the_scan_before_parsing_measures_what_the_parsed_tree_holds():
    import email

    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_tree())
    def check(tree):
        text = "From: a@example.org\nSubject: x\n" + _render(tree, [0])
        depth, parts = _shape(tree)
        exact = ParseLimits(max_mime_depth=max(depth, 1), max_mime_parts=max(parts, 1))
        inbound_email._check_mime_shape(text, exact)
        inbound_email._check_entities(email.message_from_string(text), exact)
        for over in ([{"max_mime_depth": depth - 1}] if depth > 1 else []) + (
                [{"max_mime_parts": parts - 1}] if parts > 1 else []):
            limits = dataclasses.replace(exact, **over)
            with pytest.raises(ParseError) as before:
                inbound_email._check_mime_shape(text, limits)
            with pytest.raises(ParseError) as after:
                inbound_email._check_entities(email.message_from_string(text), limits)
            assert before.value.error_type == after.value.error_type == LIMIT_ERRORS[next(iter(over))]

    check()


def test_every_limit_is_a_pipeline_option_that_reaches_the_parse_stage():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.graph import StageConfigs
    from pipelines.options import LeadflowOptions

    names = [f.name for f in dataclasses.fields(ParseLimits)]
    args = ["--input_file=in.jsonl", "--output_dir=out"] + [f"--{n}={i + 2}" for i, n in enumerate(names)]
    stages = StageConfigs.from_options(PipelineOptions(args).view_as(LeadflowOptions), streaming=False)
    assert dataclasses.asdict(stages.parse.limits) == {n: i + 2 for i, n in enumerate(names)}
    default = StageConfigs.from_options(PipelineOptions(args[:2]).view_as(LeadflowOptions), streaming=False)
    assert default.parse.limits == ParseLimits()
