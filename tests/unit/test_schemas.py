"""The records are defined once; BigQuery, Arrow and JSON schemas derived from them agree."""

from datetime import UTC, date, datetime

import jsonschema
import pyarrow as pa
import pytest

from schemas import derive, records
from schemas.records import TABLES

ALL_RECORDS = [spec.record for spec in TABLES.values()] + [records.ApiLeadPayload]
BQ_TO_ARROW = {
    "STRING": pa.string(), "INTEGER": pa.int64(), "FLOAT": pa.float64(), "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(),
}
BQ_TO_JSON = {"STRING": "string", "INTEGER": "integer", "FLOAT": "number", "BOOLEAN": "boolean",
              "TIMESTAMP": "string", "DATE": "string"}


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: r.__name__)
def test_bigquery_arrow_and_json_schemas_agree(record):
    bq = derive.bigquery_schema(record)
    arrow = derive.arrow_schema(record)
    js = derive.json_schema(record)
    assert [f["name"] for f in bq] == arrow.names == list(js["properties"])
    for f in bq:
        a = arrow.field(f["name"])
        prop = js["properties"][f["name"]]
        if f["mode"] == "REPEATED":  # a list: Arrow list of the type (may be empty), JSON array
            assert a.type == pa.list_(BQ_TO_ARROW[f["type"]])
            assert prop["type"] == "array" and prop["items"]["type"] == BQ_TO_JSON[f["type"]]
            assert f["name"] in js["required"]
            continue
        assert a.type == BQ_TO_ARROW[f["type"]]
        assert a.nullable == (f["mode"] == "NULLABLE")
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert BQ_TO_JSON[f["type"]] in types
        assert ("null" in types) == (f["mode"] == "NULLABLE")
        assert (f["name"] in js["required"]) == (f["mode"] == "REQUIRED")
        assert f["description"], f"{record.__name__}.{f['name']} has no description"


def test_table_specs_partition_and_cluster_on_real_columns():
    for spec in TABLES.values():
        names = {f["name"]: f for f in derive.bigquery_schema(spec.record)}
        assert names[spec.partition_field]["type"] in ("TIMESTAMP", "DATE")
        assert names[spec.partition_field]["mode"] == "REQUIRED"
        assert all(c in names for c in spec.cluster_fields)
    assert {"leads", "lead_events", "lead_source_history", "dead_letters", "source_daily_counts", "lead_assignments",
            "agent_status", "source_registrations"} <= set(TABLES)


def test_rows_validate_against_their_json_schema():
    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    row = derive.to_row(records.SourceDailyCounts(
        source_id="meta_lead_ads", event_date=date(2026, 11, 20), events=3, new_leads=1, cross_source=1,
        duplicates=1, replays=0, is_final=True, pane_index=0, computed_at=now))
    assert row["event_date"] == "2026-11-20" and row["computed_at"] == "2026-11-20T10:00:00Z"
    jsonschema.validate(row, derive.json_schema(records.SourceDailyCounts))
    # A row missing a required column fails validation: the schema is not vacuous.
    del row["events"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(row, derive.json_schema(records.SourceDailyCounts))


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="UTC"):
        derive.to_row(records.SourceDailyCounts(
            source_id="x", event_date=date(2026, 1, 1), events=0, new_leads=0, cross_source=0, duplicates=0,
            replays=0, is_final=True, pane_index=0, computed_at=datetime(2026, 1, 1)))
