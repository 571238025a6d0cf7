"""Hostile input (issue 16, item 8): every parser's worst shapes near the 1 MB payload limit end as the right lead or
dead letter, through the Parse stage's pure function, named and recognised by shape alike. ``make bench`` times the
same shapes (pipelines.dev.parse_bench); these tests assert outcomes only."""

from __future__ import annotations

import pytest

from pipelines.synthetic import hostile
from transforms.messages import InputMessage
from transforms.parse import RejectedMessage, parse_message
from transforms.parsers.base import ParseConfig
from transforms.parsers.registry import PARSERS
from transforms.sources import SourceRegistry

SIZE = 960 * 1024
CONFIG = ParseConfig(registry=SourceRegistry.from_csv(None))

JSON_PARSERS = ("meta_lead_ads", "google_ads_lead_form", "knowlarity_call", "api")
# (parser, shape) -> what its 960 KB payload ends as: a number of leads, or the dead letter's error type
EXPECTED: dict[tuple[str, str], int | str] = {
    **{(p, s): 1 for p in ("meta_lead_ads", "google_ads_lead_form", "knowlarity_call")
       for s in ("ordinary", "escaped_strings", "long_number_list")},
    **{(p, "deep_nesting"): "json_too_deep" for p in JSON_PARSERS},
    **{(p, "nesting_at_the_limit"): "json_too_many_containers" for p in JSON_PARSERS},
    **{(p, "many_keys"): "json_too_many_keys" for p in JSON_PARSERS},
    ("meta_lead_ads", "many_answers"): "json_too_many_containers",
    ("meta_lead_ads", "many_values"): 1,
    ("google_ads_lead_form", "many_columns"): "json_too_many_containers",
    # no Twilio webhook is near 1 MB (an SMS is 1,600 characters): every shape is over max_form_chars
    **{(p, s): "form_too_large" for p in ("twilio_sms", "twilio_voice") for s in hostile.PARSER_SHAPES[p]},
    # the API schema caps text fields (a message at 10,000 characters), so no 960 KB API payload is a lead
    **{("api", s): "validation_error" for s in ("ordinary", "escaped_strings", "long_number_list")},
    ("csv_upload", "ordinary"): 16948,
    ("csv_upload", "many_rows"): "csv_too_many_rows",
    ("csv_upload", "many_columns_at_the_limit"): 971,
    ("csv_upload", "too_many_columns"): "csv_too_many_columns",
    ("csv_upload", "quoted_multiline_cells"): 135,
    ("csv_upload", "blank_rows"): 1,
    ("csv_upload", "one_huge_cell"): "invalid_csv",  # a cell over the csv module's field limit
    **{("inbound_email", s): 1 for s in hostile.EMAIL_SHAPES},  # every e-mail shape not named below is a lead
    ("inbound_email", "mime_too_deep"): "mime_too_deep",
    ("inbound_email", "mime_too_many_parts"): "mime_too_many_parts",
}
CASES = [(p, s) for p, shapes in hostile.PARSER_SHAPES.items() for s in shapes]


def test_every_parser_has_shapes_and_every_shape_an_expected_outcome():
    assert sorted(hostile.PARSER_SHAPES) == sorted(PARSERS)
    assert all(hostile.ORDINARY in shapes for shapes in hostile.PARSER_SHAPES.values())
    assert sorted(EXPECTED) == sorted(CASES)


def outcome(provider: str, text: str, attributes: dict) -> int | str:
    data = text.encode("utf-8")
    assert len(data) < 1_000_000  # under the payload limit: the parser decides, not the size check
    try:
        units = parse_message(InputMessage("h1", data, attributes), CONFIG, 1_000_000)
    except RejectedMessage as e:
        assert e.stage == "parse"
        return e.error_type
    assert all(unit.raw.provider == provider for unit in units)
    return len(units)


@pytest.mark.parametrize(("provider", "shape"), CASES, ids=[f"{p}-{s}" for p, s in CASES])
def test_a_worst_shape_near_the_payload_limit_ends_as_expected(provider, shape):
    text = hostile.PARSER_SHAPES[provider][shape](SIZE)
    assert outcome(provider, text, {"provider": provider}) == EXPECTED[provider, shape]
    assert outcome(provider, text, {}) == EXPECTED[provider, shape]  # recognised by its shape: the same outcome


def test_the_parse_bench_runs_over_every_parser_and_shape():
    from pipelines.dev import parse_bench

    result = parse_bench.measure(sizes_kb=(2, 4), repeat=1)  # tiny sizes: this checks the bench runs, not times
    assert sorted(result) == sorted(f"{p} {s}" for p, s in CASES)
    assert all(case["sizes"][4]["ms"] >= 0 and "growth" in case for case in result.values())
    assert all(case["sizes"][kb]["vs_email"] >= 0 for case in result.values() for kb in (2, 4))
    only_meta = parse_bench.measure(sizes_kb=(2,), repeat=1, parsers=["meta_lead_ads"])  # measures the e-mail too
    assert all(case["sizes"][2]["vs_email"] >= 0 for case in only_meta.values())
    table = parse_bench.format_table(result)
    assert len(table.splitlines()) == len(CASES) + 1
