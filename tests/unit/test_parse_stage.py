"""The parse stage as a whole (decode, dispatch, units) and the input-line / dead-letter helpers,
including hypothesis fuzzing: arbitrary bytes and attributes only ever end as units or rejections."""

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.messages import InputLineError, InputMessage, dead_letter, message_from_json_line
from transforms.normalize import NormalizeError, normalize_unit
from transforms.parse import RejectedMessage, parse_message
from transforms.parsers.base import ParseConfig
from transforms.parsers.registry import PARSERS
from transforms.sources import SourceRegistry

CONFIG = ParseConfig(registry=SourceRegistry.from_csv())
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def msg(data: bytes, provider: str | None = "api", message_id: str = "m1") -> InputMessage:
    return InputMessage(message_id, data, {"provider": provider} if provider else {}, T0)


@pytest.mark.parametrize(
    ("data", "provider", "stage", "error_type"),
    [
        (b"x" * 2_000_001, "api", "decode", "payload_too_large"),
        (b"  \n", "api", "decode", "empty_payload"),
        (b'{"a": "\xff"}', "api", "decode", "invalid_utf8"),
        (b"{", "api", "parse", "invalid_json"),
        (b"[" * 100_000, "api", "parse", "json_too_deep"),
        (b'{"x": 1}', "fax_machine", "parse", "unknown_provider"),
        (b"what is this", None, "parse", "unidentified_payload"),
    ],
)
def test_rejections(data, provider, stage, error_type):
    with pytest.raises(RejectedMessage) as e:
        parse_message(msg(data, provider), CONFIG, 1_000_000)
    assert (e.value.stage, e.value.error_type) == (stage, error_type)


def test_units_take_the_provider_default_source_and_csv_rows_get_unit_ids():
    (unit,) = parse_message(msg(b'{"external_id": "a1", "phone": "+14155550123"}'), CONFIG, 1_000_000)
    assert (unit.unit_id, unit.source_id, unit.source_verified) == ("m1", "api", True)
    csv_text = b"name,phone\nAna,+14155550123\n\nBo,+14155550124\n"
    units = parse_message(msg(csv_text, "csv_upload"), CONFIG, 1_000_000)
    assert [u.unit_id for u in units] == ["m1#1", "m1#3"]  # row numbers count the blank record
    assert all(u.source_id == "csv_upload" for u in units)


def test_message_lines():
    m = message_from_json_line(b'{"message_id": 7, "publish_time": "2026-11-20T10:00:00+01:00", '
                               b'"attributes": {"provider": "api"}, "data": "{}"}')
    assert (m.message_id, m.publish_time, m.data) == ("7", datetime(2026, 11, 20, 9, tzinfo=UTC), b"{}")
    raw = base64.b64encode(b"\xff\xfe").decode()
    assert message_from_json_line(json.dumps({"data_base64": raw})).data == b"\xff\xfe"
    no_id = message_from_json_line(b'{"data": "x"}')
    assert no_id.message_id.startswith("sha256:") and no_id.message_id == message_from_json_line(
        b'{"data": "x"}').message_id
    for bad in (b"nope", b"[1]", b'{"attributes": {"a": 1}}', b'{"data": 5}', b'{"data_base64": "%%"}',
                b'{"publish_time": "yesterday"}'):
        with pytest.raises(InputLineError):
            message_from_json_line(bad)


def test_dead_letter_keeps_payload_text_base64_or_truncated():
    def dl(data, limit=100):
        return dead_letter(message_id="m", data=data, attributes={"provider": "api"}, publish_time=T0,
                           provider="api", stage="parse", error_type="x", error_message="y", limit=limit)

    text = dl(b'{"a": 1}')
    assert (text.payload, text.payload_encoding, text.payload_truncated) == ('{"a": 1}', "utf-8", False)
    binary = dl(b"\xff\x00")
    assert (base64.b64decode(binary.payload), binary.payload_encoding) == (b"\xff\x00", "base64")
    big = dl(b"a" * 1000)
    assert (len(big.payload), big.payload_truncated, big.payload_bytes) == (100, True, 1000)
    assert big.payload_sha256 == hashlib.sha256(b"a" * 1000).hexdigest()
    assert json.loads(big.attributes) == {"provider": "api"}


@pytest.mark.fuzz
@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass"))),
    provider=st.one_of(st.none(), st.sampled_from(sorted(PARSERS)), st.text(max_size=12)),
)
def test_fuzz_parse_and_normalize_only_reject_cleanly(data, provider):
    try:
        units = parse_message(msg(data, provider), CONFIG, 1_000_000)
    except RejectedMessage as e:
        assert e.stage in ("decode", "parse") and e.error_type and e.message
        return
    for unit in units:
        try:
            lead = normalize_unit(unit)
        except NormalizeError as e:
            assert e.error_type in ("missing_contact", "invalid_phone", "invalid_email", "invalid_contact")
            continue
        assert lead.identity_key.startswith(("phone:+", "email:"))
