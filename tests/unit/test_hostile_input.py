"""Hostile input (issue 16): nothing on an input line or in a payload ends a run, JSON is read one strict way
everywhere, and a bad row of an upload dead-letters that row, not the whole upload."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipelines.synthetic import hostile
from transforms.messages import InputLineError, InputMessage, decode_json, message_from_json_line
from transforms.normalize import normalize_unit
from transforms.parse import parse_message
from transforms.parsers.base import ParseConfig, ParseError, load_json_object
from transforms.sources import SourceRegistry

HUGE_INT = "9" * 5000  # past Python's integer-string conversion limit (4300 digits)


@pytest.mark.parametrize(("text", "error_type"), [
    (f'{{"id": {HUGE_INT}}}', "json_number_too_long"),
    ('{"id": NaN}', "json_non_finite_number"),
    ('{"id": Infinity}', "json_non_finite_number"),
    ('{"phone": [-Infinity, "+15551234567"]}', "json_non_finite_number"),
    ('{"id": 1', "invalid_json"),
    ('{"phone": "+12125550001", "phone": "+12125550002"}', "json_duplicate_key"),
    ('{"a": {"x": 1, "x": 2}}', "json_duplicate_key"),
])
def test_payload_json_refused_with_its_own_error_type(text, error_type):
    with pytest.raises(ParseError) as e:
        load_json_object(text)
    assert e.value.error_type == error_type
    assert HUGE_INT not in str(e.value)


def test_ordinary_json_numbers_still_decode():
    assert decode_json('{"a": 1.5e3, "b": -2, "c": 12345678901234567890}') == {
        "a": 1500.0, "b": -2, "c": 12345678901234567890}


@pytest.mark.parametrize("line", [
    f'{{"message_id": {HUGE_INT}, "data": "x"}}',
    '{"message_id": NaN, "data": "x"}',
    '{"message_id": ["a"], "data": "x"}',
    '{"message_id": true, "data": "x"}',
    json.dumps({"message_id": "m" * 2000, "data": "x"}),
    '{"message_id": "m1", "data": "x", "publish_time": "9999-12-31T23:59:59-01:00"}',
    '{"message_id": "m1", "data_base64": 5}',
    '{"message_id": "m1", "message_id": "m2", "data": "x"}',
])
def test_a_hostile_input_line_is_an_input_line_error(line):
    with pytest.raises(InputLineError):
        message_from_json_line(line)


def test_a_numeric_message_id_is_kept_as_text():
    assert message_from_json_line('{"message_id": 8812, "data": "x"}').message_id == "8812"


def _upload(rows: int, bad_every: int) -> bytes:
    lines = ["full_name,phone,email"]
    for i in range(rows):
        if i % bad_every == 0:
            lines.append(f"Bad Row {i},not-a-phone,not-an-email")
        else:
            lines.append(f"Person {i},+1212555{i % 10000:04d},p{i}@example.org")
    return ("\n".join(lines) + "\n").encode()


def test_a_bad_row_dead_letters_only_that_row_with_the_uploads_facts():
    data = _upload(2000, 100)
    msg = InputMessage("up-1", data, {"provider": "csv_upload"})
    units = parse_message(msg, ParseConfig(registry=SourceRegistry.from_csv(None)), 1_000_000)
    assert len(units) == 2000
    bad = [u for u in units if u.raw.full_name.startswith("Bad Row")]
    assert len(bad) == 20
    for unit in units:
        assert unit.data.decode().startswith("full_name,phone,email\n")
        assert unit.data.count(b"\n") == 2  # the header and this row only
    from transforms.normalize import NormalizeDoFn

    fn = NormalizeDoFn("US")
    fn.setup()
    dead = [out.value for u in bad for out in fn.process(u)]
    assert len(dead) == 20
    want = {"upload_message_id": "up-1", "upload_bytes": str(len(data)),
            "upload_sha256": hashlib.sha256(data).hexdigest()}
    for d in dead:
        assert d.payload_bytes < 100  # was the whole upload (first 64 KiB) for every bad row
        assert json.loads(d.attributes).items() >= want.items()
        assert d.message_id.startswith("up-1#")
    # good rows still normalize from the same units
    assert normalize_unit(units[1], "US").phone_e164 == "+12125550001"


def _line(data: str, message_id: str, **attributes: str) -> str:
    return json.dumps({"message_id": message_id, "publish_time": "2026-11-20T10:00:00Z",
                       "attributes": attributes, "data": data})


HOSTILE_LINES = [
    f'{{"message_id": {HUGE_INT}, "data": "x"}}',
    '{"message_id": NaN, "data": "x"}',
    '{"message_id": "h-time", "data": "x", "publish_time": "9999-12-31T23:59:59-01:00"}',
    "not json at all",
    _line(f'{{"leadgen_id": {HUGE_INT}}}', "h-meta-int", provider="meta_lead_ads"),
    _line('{"id": Infinity, "field_data": []}', "h-meta-inf", provider="meta_lead_ads"),
    _line('{"full_name": "A", "phone": NaN}', "h-api-nan", provider="api"),
    _line(_upload(300, 7).decode(), "h-upload", provider="csv_upload"),
]


def _unreadable(line: str) -> bool:
    try:
        message_from_json_line(line)
    except InputLineError:
        return True
    return False


@pytest.mark.slow
def test_hostile_lines_and_the_whole_corpus_mixed_into_the_sample_never_end_the_run(tmp_path):
    from pipelines import lead_pipeline
    from pipelines.ops.summary import summarize
    from pipelines.synthetic.samples import sample_path
    from tests.unit.test_hostile_corpus import CASES, CORPUS

    corpus = {}  # every case of the hostile corpus as a message of its own
    for name, provider, expected in CASES:
        with open(CORPUS / name, encoding="utf-8", newline="") as f:
            attributes = {"provider": provider} if provider else {}
            corpus[f"h-corpus-{name}"] = (_line(f.read(), f"h-corpus-{name}", **attributes), expected)
    hostile = HOSTILE_LINES + [line for line, _ in corpus.values()]
    lines = sample_path().read_text().splitlines()
    step = max(1, len(lines) // len(hostile))
    for i, line in enumerate(hostile):
        lines.insert(i * step, line)
    src, out = tmp_path / "mixed.jsonl", tmp_path / "out"
    src.write_text("\n".join(lines) + "\n")
    assert lead_pipeline.main([f"--input_file={src}", f"--output_dir={out}", "--routing=off"]) == 0
    summary = summarize(str(src), str(out))
    assert summary["accounting"]["ok"], summary["accounting"]
    dead = [json.loads(x) for x in (out / "dead_letters.jsonl").read_text().splitlines()]
    by_id = {d["message_id"]: d for d in dead}
    assert by_id["h-meta-int"]["error_type"] == "json_number_too_long"
    assert by_id["h-api-nan"]["error_type"] == "json_non_finite_number"
    sample_bad = sum(1 for line in sample_path().read_text().splitlines() if line.strip() and _unreadable(line))
    assert sum(1 for d in dead if d["stage"] == "read") == sample_bad + 4
    rows = [d for d in dead if d["message_id"].startswith("h-upload#")]
    assert rows and all(d["payload_bytes"] < 200 for d in rows)
    assert all(d["error_type"] != "internal_error" for d in dead)
    events = [json.loads(x) for x in (out / "lead_events.jsonl").read_text().splitlines()]
    evented = {e["message_id"].split("#")[0] for e in events}
    dead_by_message = {d["message_id"].split("#")[0]: d for d in dead}
    for message_id, (_, expected) in corpus.items():
        if expected == "lead":  # parsed as a lead; the normalizer may still refuse it (a lead without a contact)
            assert message_id in evented or dead_by_message[message_id]["stage"] == "normalize", message_id
        else:
            assert dead_by_message[message_id]["error_type"] == expected, message_id


def test_unknown_keys_and_providers_are_never_echoed_unless_they_look_like_field_names():
    from transforms.messages import safe_name

    assert safe_name("fone") == "'fone'"
    assert safe_name("zebulon.quixote@example.org", 3) == "#3 (not shown)"
    assert safe_name("+15551234567") == "(not shown)"
    config = ParseConfig(registry=SourceRegistry.from_csv(None))
    payload = json.dumps({"external_id": "a1", "full_name": "A", "phone": "+12125550001",
                          "zebulon.quixote@example.org": "x"})
    with pytest.raises(Exception) as e:
        parse_message(InputMessage("m1", payload.encode(), {"provider": "api"}), config, 1_000_000)
    assert "zebulon" not in str(e.value) and "unknown field #4 (not shown)" in str(e.value)
    with pytest.raises(Exception) as e:
        parse_message(InputMessage("m2", b'{"a": 1}', {"provider": "jane.doe@example.org"}), config, 1_000_000)
    assert e.value.error_type == "unknown_provider" and "jane" not in str(e.value)


def test_the_google_ads_key_never_reaches_a_dead_letter():
    from transforms.messages import dead_letter_for_message

    body = json.dumps({"lead_id": "x", "google_key": 's3cr"et-value', "user_column_data": "bad"})
    dead = dead_letter_for_message(InputMessage("g1", body.encode(), {"provider": "google_ads_lead_form"}),
                                   stage="parse", error_type="invalid_field", error_message="user_column_data")
    assert "s3cr" not in dead.payload and "et-value" not in dead.payload
    assert json.loads(dead.payload)["google_key"] == "[redacted]"
    assert dead.payload_sha256 == hashlib.sha256(body.encode()).hexdigest()  # the original's hash, for lineage


@pytest.mark.parametrize(("name", "message", "want_name", "want_message"), [
    ('=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "'=HYPERLINK(\"http://evil.example\",\"x\")",
     "'+cmd|' /C calc'!A0"),
    ("@SUM(1+1)", "-2+3", "'@SUM(1+1)", "'-2+3"),
    ("Ann O'Neil", "call me - after 5", "Ann O'Neil", "call me - after 5"),
])
def test_text_that_would_run_in_a_spreadsheet_is_neutralised(name, message, want_name, want_message):
    payload = json.dumps({"external_id": "f1", "full_name": name, "phone": "+12125550001", "message": message})
    (unit,) = parse_message(InputMessage("f1", payload.encode(), {"provider": "api"}),
                            ParseConfig(registry=SourceRegistry.from_csv(None)), 1_000_000)
    lead = normalize_unit(unit, "US")
    assert (lead.full_name, lead.message) == (want_name, want_message)
    assert lead.phone_e164 == "+12125550001"  # E.164 keeps its "+": a number, not a formula


@pytest.mark.parametrize("provider", ["api", "csv_upload"])
def test_an_invisible_character_in_an_identifier_is_removed_by_every_parser(provider):
    email, phone = "ja\u200bne@exam\u00adple.org", "+1 212\u200d555 0001"
    if provider == "api":
        payload = json.dumps({"external_id": "z1", "email": email, "phone": phone})
    else:
        payload = f"email,phone\n{email},{phone}\n"
    (unit,) = parse_message(InputMessage("z1", payload.encode(), {"provider": provider}),
                            ParseConfig(registry=SourceRegistry.from_csv(None)), 1_000_000)
    lead = normalize_unit(unit, "US")
    assert (lead.email, lead.phone_e164) == ("jane@example.org", "+12125550001")


@pytest.mark.parametrize("shape", sorted(hostile.SHAPES))
def test_hostile_html_near_the_payload_limit_still_parses(shape):
    # the shapes that made the stdlib HTML tokenizer quadratic (issue 16); make bench times them
    from transforms.parsers import inbound_email

    text = hostile.email_of(hostile.html_of(shape, 960_000))
    assert len(text.encode()) < 1_000_000
    (lead,) = inbound_email.parse(text, {"provider": "inbound_email"}, ParseConfig(
        registry=SourceRegistry.from_csv(None)))
    # the parser recovers past the junk; only an open <svg> (skipped content, like a picture) hides the tail;
    # the ordinary body's own first phone comes before the contact block
    want = {"unclosed_svg": None, hostile.ORDINARY: "555-1234"}.get(shape, "+1 212 555 0001")
    assert lead.phone == want


def test_a_message_over_the_time_budget_is_a_processing_timeout_and_the_rest_flows(monkeypatch):
    import time as time_module

    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms import parse as parse_stage

    real = parse_stage.parse_message

    def slow_for_one(msg, config, max_payload_bytes):
        if msg.message_id == "slow":
            time_module.sleep(1.5)  # what a pathological payload would cost
        return real(msg, config, max_payload_bytes)

    monkeypatch.setattr(parse_stage, "parse_message", slow_for_one)
    body = json.dumps({"external_id": "t1", "full_name": "A", "phone": "+12125550001"}).encode()
    messages = [InputMessage(i, body, {"provider": "api"}) for i in ("fast-1", "slow", "fast-2")]
    with TestPipeline() as p:
        out = p | beam.Create(messages) | parse_stage.ParseMessages(parse_stage.ParseStageConfig(max_unit_seconds=0.3))
        assert_that(out["units"] | "UnitIds" >> beam.Map(lambda u: u.unit_id), equal_to(["fast-1", "fast-2"]),
                    label="units")
        assert_that(out["dead_letters"] | "Dead" >> beam.Map(lambda d: (d.message_id, d.error_type)),
                    equal_to([("slow", "processing_timeout")]), label="dead")
