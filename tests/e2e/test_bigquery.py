"""End to end against bqemulator: tables from the records, the BigQuery sink's two backends, dead letters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud import bigquery

from infra.local.processes import free_port
from schemas import bigquery as bq
from schemas.bigquery import view_names
from schemas.derive import bigquery_schema, to_row
from schemas.records import TABLES, DeadLetter, SourceDailyCounts
from tests.helpers import recorder
from tests.helpers.bigquery import DATASET, PROJECT, TIMINGS
from tests.helpers.leads import T0, lead
from transforms import bigquery_sink as sink
from transforms.identity import IdentityConfig, Resolver, decide_in_order
from transforms.identity_store import MemoryStore
from transforms.messages import dead_letter

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ID_COLUMN = {"leads": "lead_id", "lead_events": "event_id", "lead_source_history": "event_id",
             "dead_letters": "message_id", "source_daily_counts": "source_id",
             "lead_assignments": "assignment_event_id", "agent_status": "agent_id",
             "source_registrations": "source_id", "lead_outcomes": "lead_id", "lead_merges": "merged_lead_id",
             "lead_versions": "version_id", "identifier_guards": "identifier_hash", "erasures": "erasure_id"}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def decide(*leads):
    return decide_in_order(Resolver(MemoryStore(), IdentityConfig(), key=b"test"), leads)


def sample_records() -> dict[str, list]:
    """Real records for every table: two people, three sources, a dead letter and a daily count."""
    decisions = decide(
        lead("m1", "phone:+14155550123", "meta_lead_ads", event_s=0),
        lead("m2", "phone:+14155550123", "google_ads", event_s=60, external_id="g-1"),
        lead("m3", "phone:+14155550123", "meta_lead_ads", event_s=120),
        lead("m4", "phone:+14155550188", "zillow", event_s=30),
        lead("m5", "email:ann@example.org", "api", event_s=40),
        lead("m6", "phone:+14155550188", "api", event_s=50, email="ann@example.org", phone="+14155550188"),
    )
    return {
        "lead_merges": [m for d in decisions for m in d.merges],
        "lead_versions": [v for d in decisions for v in d.versions],
        "identifier_guards": [g for d in decide(*(
            lead(f"g{i}", phone="+14155550177", email=f"caller{i}@example.org", event_s=i) for i in range(5)))
            for g in d.guards],
        "leads": [d.lead for d in decisions if d.lead],
        "lead_events": [d.event for d in decisions],
        "lead_source_history": [d.history for d in decisions if d.history],
        "dead_letters": [dead_letter(
            message_id="m9", data=b'{"broken": ', attributes={"provider": "meta_lead_ads"}, publish_time=T0,
            provider="meta_lead_ads", stage="parse", error_type="invalid_json", error_message="not JSON")],
        "source_daily_counts": [SourceDailyCounts(
            source_id="meta_lead_ads", event_date=date(2026, 11, 20), events=2, new_leads=1, cross_source=0,
            duplicates=1, replays=0, is_final=True, pane_index=0, computed_at=T0)],
        **routing_records(decisions[0].lead),
    }


def routing_records(first_lead) -> dict[str, list]:
    """Assignment history, an agent status change, a registration and an outcome for one lead, made by the
    pipeline's own routing functions."""
    from schemas.records import Erasure, LeadOutcome
    from transforms.enrich import registration_for
    from transforms.reference import load_reference
    from transforms.routing import AGENT_STATUS, ASSIGNMENT, Rules, TeamState, dispatch_lead, expire, route_lead

    ref, state, sla = load_reference(), TeamState(), timedelta(seconds=120)
    routed = route_lead(ref, replace(first_lead, state="NY"))
    rules = Rules(sla)
    outs = dispatch_lead(ref, state, routed, T0, T0, rules) + expire(ref, state, routed.team, T0 + sla, T0, rules)
    (unknown,) = decide(lead("m7", "phone:+14155550199", "email:unknown.example", event_s=10))
    return {
        "lead_assignments": [r for k, r in outs if k == ASSIGNMENT],
        "agent_status": [r for k, r in outs if k == AGENT_STATUS],
        "source_registrations": [registration_for(unknown.event, 0.3, T0)],
        "lead_outcomes": [LeadOutcome(lead_id=first_lead.lead_id, converted=True, outcome_at=T0, value=1200.0,
                                      reported_by="test")],
        "erasures": [Erasure(erasure_id="e-1", requested_by="test", requested_at=T0, identifier_kind="phone",
                             subject_hash="0" * 32, leads=1, rows_deleted=3, rows_by_table='{"leads": 1}',
                             store_rows_deleted=2, tombstones=4, pending_tables=[], dry_run=False, finished_at=T0)],
    }


def new_dataset(host_port: str) -> str:
    """A fresh dataset with every table, so tests do not see each other's rows."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    bq.ensure_dataset_and_tables(PROJECT, name, client=bq.client_for(PROJECT, host_port))
    return name


def options() -> PipelineOptions:
    return PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])


def run_sink(tables: dict[str, list], transform: beam.PTransform, record_as: str) -> beam.runners.runner.PipelineResult:
    p = beam.Pipeline(options=options())
    pcolls = {name: p | f"Create/{name}" >> beam.Create(recs) for name, recs in tables.items()}
    pcolls | transform | "Record" >> beam.Map(recorder.Record(record_as))
    result = p.run()
    result.wait_until_finish()
    return result


def count(client: bigquery.Client, dataset: str, table: str) -> int:
    return next(iter(client.query(f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`").result())).n


def counter(result, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace("bigquery_sink").with_name(name))["counters"]
    return sum(c.committed or c.attempted or 0 for c in found)


# --------------------------------------------------------------------------------------
# Emulator and tables
# --------------------------------------------------------------------------------------


def test_emulator_starts_offline_and_tables_follow_the_records(bigquery_emulator):
    assert TIMINGS["start_s"] < 60
    print(f"\n[measure] emulator start (spatial import + process + ready): {TIMINGS['start_s']:.2f}s")
    assert TIMINGS["first_ensure"] == [f"created dataset {PROJECT}.{DATASET}"] + [
        f"created table {PROJECT}.{DATASET}.{name}" for name in TABLES] + [
        f"created view {PROJECT}.{DATASET}.{name}" for name in view_names()]
    client = bq.client_for(PROJECT, bigquery_emulator)
    for name, spec in TABLES.items():
        table = client.get_table(f"{PROJECT}.{DATASET}.{name}")
        got = [(f.name, f.field_type, f.mode, f.description) for f in table.schema]
        want = [(f["name"], f["type"], f["mode"], f["description"]) for f in bigquery_schema(spec.record)]
        assert got == want, name
        assert table.description == spec.description
        # The emulator stores and reports partitioning and clustering as sent.
        assert table.time_partitioning.type_ == "DAY"
        assert table.time_partitioning.field == spec.partition_field
        assert table.clustering_fields == list(spec.cluster_fields)
    clustered = {
        (r.table_name, r.column_name, r.clustering_ordinal_position)
        for r in client.query(
            f"SELECT table_name, column_name, clustering_ordinal_position FROM `{PROJECT}.{DATASET}"
            ".INFORMATION_SCHEMA.COLUMNS` WHERE clustering_ordinal_position IS NOT NULL").result()}
    assert clustered == {(s.name, f, i + 1) for s in TABLES.values() for i, f in enumerate(s.cluster_fields)}


def test_ensure_dataset_and_tables_twice_is_harmless(bigquery_emulator):
    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset = new_dataset(bigquery_emulator)
    client.insert_rows_json(f"{PROJECT}.{dataset}.source_daily_counts",
                            [to_row(sample_records()["source_daily_counts"][0])])
    again = bq.ensure_dataset_and_tables(PROJECT, dataset, client=client)
    assert again == [f"existing dataset {PROJECT}.{dataset}"] + [
        f"existing table {PROJECT}.{dataset}.{name}" for name in TABLES] + [
        f"updated view {PROJECT}.{dataset}.{name}" for name in view_names()]  # the emulator hides view queries
    assert count(client, dataset, "source_daily_counts") == 1  # left alone, rows kept


def test_emulator_cli_creates_tables_and_stops_on_sigterm(tmp_path):
    port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "infra.local.bigquery_emulator", "--port", str(port), "--grpc_port", str(grpc_port),
           "--create", "leadflow-cli.leadflow", "--log_path", str(tmp_path / "emu.log")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("bigquery emulator ready on"):
                break
        assert lines and lines[-1].startswith(f"bigquery emulator ready on 127.0.0.1:{port}"), "".join(lines)
        assert f"created table leadflow-cli.leadflow.{next(iter(TABLES))}\n" in lines
        client = bq.client_for("leadflow-cli", f"127.0.0.1:{port}")
        assert {t.table_id for t in client.list_tables("leadflow-cli.leadflow")} == set(TABLES) | set(view_names())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "bigquery emulator stopped" in proc.stdout.read()
        with pytest.raises(OSError):  # the child emulator is gone too
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------
# Client backend
# --------------------------------------------------------------------------------------


def test_client_backend_writes_every_table(bigquery_emulator):
    dataset = new_dataset(bigquery_emulator)
    records = sample_records()
    result = run_sink(records, sink.WriteTablesToBigQuery(f"{PROJECT}:{dataset}"), "client-every-table")
    assert recorder.take("client-every-table") == []
    client = bq.client_for(PROJECT, bigquery_emulator)
    for name, recs in records.items():
        assert count(client, dataset, name) == len(recs), name
        col = ID_COLUMN[name]
        got = sorted(r[0] for r in client.query(f"SELECT {col} FROM `{PROJECT}.{dataset}.{name}`").result())
        assert got == sorted(getattr(r, col) for r in recs), name
    # Values survive the round trip (spot check: the lead row, read back through the REST API).
    (row,) = [dict(r) for r in client.list_rows(f"{PROJECT}.{dataset}.leads")
              if r["lead_id"] == records["leads"][0].lead_id]
    want = to_row(records["leads"][0])
    assert row["first_seen_at"].isoformat().replace("+00:00", "Z") == want["first_seen_at"]
    assert {k: v for k, v in row.items() if k not in ("first_seen_at", "processed_at")} == {
        k: v for k, v in want.items() if k not in ("first_seen_at", "processed_at")}
    assert counter(result, "rows_inserted") == sum(len(r) for r in records.values())
    assert counter(result, "rows_rejected") == 0


def test_same_rows_twice_the_emulator_ignores_insert_ids(bigquery_emulator):
    """Documented: bqemulator 1.4.0 ignores insertId, so a re-sent batch is stored twice.

    Real BigQuery de-duplicates on insertId best-effort (about a minute); the sink always sends
    deterministic ids (asserted here at the request level) so production gets that de-duplication.
    """
    dataset = new_dataset(bigquery_emulator)
    records = {"lead_events": sample_records()["lead_events"]}
    calls = []
    original = bigquery.Client.insert_rows_json

    def spy(self, table, rows, row_ids=None, **kw):
        calls.append((str(table), list(row_ids)))
        return original(self, table, rows, row_ids=row_ids, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bigquery.Client, "insert_rows_json", spy)
        for _ in range(2):
            run_sink(records, sink.WriteTablesToBigQuery(f"{PROJECT}.{dataset}"), "twice")
    assert recorder.take("twice") == []
    event_ids = [e.event_id for e in records["lead_events"]]
    assert [sorted(ids) for _, ids in calls] == [sorted(event_ids)] * 2
    client = bq.client_for(PROJECT, bigquery_emulator)
    assert count(client, dataset, "lead_events") == 2 * len(event_ids)  # no insertId de-duplication
    distinct = next(iter(client.query(
        f"SELECT COUNT(DISTINCT event_id) AS n FROM `{PROJECT}.{dataset}.lead_events`").result())).n
    assert distinct == len(event_ids)


def test_row_bigquery_rejects_becomes_a_dead_letter(bigquery_emulator):
    dataset = new_dataset(bigquery_emulator)
    good = [sink.prepare_row(e, "lead_events") for e in sample_records()["lead_events"]]
    bad_row = dict(good[0][2], event_id="bad-1", event_time="yesterday at noon")  # not a TIMESTAMP
    prepared = [*good[1:], ("lead_events", "bad-1", bad_row)]
    fn = sink.InsertRowsFn(PROJECT, dataset, batch_size=500, retry_budget_s=5)
    p = beam.Pipeline(options=options())
    dead = p | beam.Create(prepared) | beam.ParDo(fn)
    dead | beam.Map(recorder.Record("rejected"))
    result = p.run()
    result.wait_until_finish()
    (dl,) = recorder.take("rejected")
    assert isinstance(dl, DeadLetter)
    assert (dl.stage, dl.error_type, dl.provider) == ("sink", "bigquery_insert_error", None)
    assert dl.message_id == bad_row["message_id"]
    assert json.loads(dl.payload) == bad_row
    assert json.loads(dl.attributes)["table"] == "lead_events"
    assert json.loads(dl.attributes)["row_id"] == "bad-1"
    assert dl.error_message.startswith("invalid")  # BigQuery's reason ...
    assert "Cannot convert value" in dl.error_message  # ... and its message ...
    assert "yesterday" not in dl.error_message and bad_row["message_id"] not in dl.error_message  # ... no values
    client = bq.client_for(PROJECT, bigquery_emulator)
    assert count(client, dataset, "lead_events") == len(good) - 1  # the valid rows of the batch are stored
    assert counter(result, "rows_rejected") == 1
    assert counter(result, "rows_inserted") == len(good) - 1


def test_emulator_down_rows_become_unavailable_dead_letters(bigquery_emulator):
    records = sample_records()
    transform = sink.WriteTablesToBigQuery(
        f"{PROJECT}:{DATASET}", emulator_host=f"127.0.0.1:{free_port()}",  # nothing listens there
        retry_budget_s=1.0, initial_backoff_s=0.2, request_timeout_s=2)
    t0 = time.monotonic()
    result = run_sink(records, transform, "down")
    elapsed = time.monotonic() - t0
    dead = recorder.take("down")
    assert len(dead) == sum(len(r) for r in records.values())  # nothing silently dropped
    assert {d.error_type for d in dead} == {"bigquery_unavailable"}
    assert all("ConnectionError" in d.error_message for d in dead)
    assert {json.loads(d.attributes)["table"] for d in dead} == set(TABLES)
    payloads = sorted(json.loads(d.payload)[ID_COLUMN["lead_events"]] for d in dead
                      if json.loads(d.attributes)["table"] == "lead_events")
    assert payloads == sorted(e.event_id for e in records["lead_events"])
    assert counter(result, "rows_retried") >= len(dead)
    assert counter(result, "rows_unavailable") == len(dead)
    assert elapsed < 60


# --------------------------------------------------------------------------------------
# Both backends
# --------------------------------------------------------------------------------------


class FakeWriteToBigQuery(beam.PTransform):
    """Stands in for beam.io.WriteToBigQuery: records what it receives, fails rows whose id is 'reject-me'."""

    instances: list[dict] = []

    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        FakeWriteToBigQuery.instances.append(kwargs)

    def expand(self, rows):
        table = self.kwargs["table"]
        storage = self.kwargs["method"] == "STORAGE_WRITE_API"

        def fail(row):
            if row.get("event_id") != "reject-me":
                return []
            if storage:
                return [{"error_message": "Field event_time: invalid value", "failed_row": row}]
            return [(table, row, [{"reason": "invalid", "location": "event_time", "message": "no good"}])]

        rows | "Record" >> beam.Map(lambda r: recorder.Record("fake-beam")((table, r)))

        class Result:
            failed_rows_with_errors = rows | "Fail" >> beam.FlatMap(fail)

        return Result()


def test_both_backends_receive_identical_prepared_rows(bigquery_emulator, monkeypatch):
    """Runs the client backend (against the emulator) and the beam backend (with a recording fake in place
    of WriteToBigQuery) on the same records; what reaches insert_rows_json and WriteToBigQuery must match."""
    records = sample_records()
    dataset = new_dataset(bigquery_emulator)
    seen_by_client = []
    original = bigquery.Client.insert_rows_json

    def spy(self, table, rows, row_ids=None, **kw):
        name = str(table).rsplit(".", 1)[-1]
        seen_by_client.extend((name, rid, json.dumps(r, sort_keys=True)) for rid, r in zip(row_ids, rows, strict=True))
        return original(self, table, rows, row_ids=row_ids, **kw)

    monkeypatch.setattr(bigquery.Client, "insert_rows_json", spy)
    run_sink(records, sink.WriteTablesToBigQuery(f"{PROJECT}.{dataset}"), "client-identical")
    monkeypatch.setattr(sink, "WriteToBigQuery", FakeWriteToBigQuery)
    run_sink(records, sink.WriteTablesToBigQuery(f"{PROJECT}:{dataset}", backend="beam"), "beam-identical")
    seen_by_beam = [(t.rsplit(".", 1)[-1], json.dumps(r, sort_keys=True)) for t, r in recorder.take("fake-beam")]
    assert recorder.take("client-identical") == recorder.take("beam-identical") == []

    expected = sorted((name, json.dumps(to_row(r), sort_keys=True)) for name, recs in records.items() for r in recs)
    assert sorted((t, r) for t, _, r in seen_by_client) == expected
    assert sorted(seen_by_beam) == expected
    # The client sends the documented deterministic row ids.
    assert all(rid == sink.row_id_for(t, json.loads(r)) for t, rid, r in seen_by_client)

    # And in the graph, each backend tail consumes exactly the PrepareRows output of its table.
    for backend in ("client", "beam"):
        p = beam.Pipeline(options=options())
        pcolls = {name: p | f"Create/{name}" >> beam.Create(recs) for name, recs in records.items()}
        _ = pcolls | sink.WriteTablesToBigQuery(f"{PROJECT}:{dataset}", backend=backend)
        proto = p.to_runner_api()
        by_name = {t.unique_name: t for t in proto.components.transforms.values()}
        tail = "InsertRows" if backend == "client" else "WriteToBigQuery"
        for name in TABLES:
            (prep,) = [t for n, t in by_name.items() if n.endswith(f"/{name}/PrepareRows")]
            (tail_t,) = [t for n, t in by_name.items() if n.endswith(f"/{name}/{tail}")]
            assert list(tail_t.inputs.values()) == list(prep.outputs.values())


def test_beam_backend_maps_failed_rows_of_both_methods(monkeypatch):
    monkeypatch.setattr(sink, "WriteToBigQuery", FakeWriteToBigQuery)
    FakeWriteToBigQuery.instances.clear()
    events = sample_records()["lead_events"]
    events[0].event_id = "reject-me"
    for method in ("STREAMING_INSERTS", "STORAGE_WRITE_API"):
        run_sink({"lead_events": events}, sink.WriteTablesToBigQuery(f"{PROJECT}:{DATASET}", backend="beam",
                                                                      method=method), f"beam-{method}")
        (dl,) = recorder.take(f"beam-{method}")
        assert (dl.stage, dl.error_type) == ("sink", "bigquery_insert_error")
        assert dl.message_id == events[0].message_id
        assert json.loads(dl.payload) == to_row(events[0])  # storage types converted back to JSON
        assert json.loads(dl.attributes)["row_id"] == "reject-me"
        received = [r for _, r in recorder.take("fake-beam")]
        if method == "STORAGE_WRITE_API":
            assert type(received[0]["event_time"]).__name__ == "Timestamp"
    streaming, storage = FakeWriteToBigQuery.instances
    assert streaming["table"] == f"{PROJECT}:{DATASET}.lead_events"
    assert streaming["schema"] == {"fields": bigquery_schema(TABLES["lead_events"].record)}
    assert streaming["create_disposition"] == "CREATE_NEVER" and streaming["write_disposition"] == "WRITE_APPEND"
    assert streaming["insert_retry_strategy"] == "RETRY_ON_TRANSIENT_ERROR"
    assert streaming["additional_bq_parameters"] == {
        "timePartitioning": {"type": "DAY", "field": "event_time"}, "clustering": {"fields": ["source_id", "outcome"]}}
    assert storage["method"] == "STORAGE_WRITE_API" and storage["type_overrides"] == {"DATE": date}


def test_beam_backend_graph_builds_with_streaming_inserts():
    p = beam.Pipeline(options=options())
    pcolls = {name: p | f"Create/{name}" >> beam.Create(recs) for name, recs in sample_records().items()}
    dead = pcolls | sink.WriteTablesToBigQuery(f"{PROJECT}:{DATASET}", backend="beam")
    assert dead.element_type is not None
    proto = p.to_runner_api()
    names = [t.unique_name for t in proto.components.transforms.values()]
    for name in TABLES:
        assert any(n.endswith(f"{name}/WriteToBigQuery/WriteToBigQuery") for n in names), name
        assert any(n.startswith(f"WriteTablesToBigQuery/{name}/WriteToBigQuery/WriteToBigQuery/")
                   and n.endswith("StreamInsertRows") for n in names), name


def _storage_write_jar() -> Path:
    return Path.home() / ".apache_beam/cache/jars/beam-sdks-java-io-google-cloud-platform-expansion-service-" \
        f"{beam.__version__}.jar"


@pytest.mark.skipif(not _storage_write_jar().exists() and not os.environ.get("LEADFLOW_ONLINE"),
                    reason="STORAGE_WRITE_API is cross-language: building its graph needs Beam's GCP expansion "
                           "service jar from Maven Central (offline here); see "
                           "test_beam_backend_maps_failed_rows_of_both_methods for the wiring")
def test_beam_backend_graph_builds_with_storage_write_api():
    p = beam.Pipeline(options=options())
    pcolls = {name: p | f"Create/{name}" >> beam.Create(recs) for name, recs in sample_records().items()}
    _ = pcolls | sink.WriteTablesToBigQuery(f"{PROJECT}:{DATASET}", backend="beam", method="STORAGE_WRITE_API")
    names = [t.unique_name for t in p.to_runner_api().components.transforms.values()]
    for name in TABLES:
        assert any(f"{name}/WriteToBigQuery/WriteToBigQuery" in n for n in names), name


# --------------------------------------------------------------------------------------
# Measurements and small contracts
# --------------------------------------------------------------------------------------


def test_measure_insert_throughput_and_query_latency(bigquery_emulator):
    dataset = new_dataset(bigquery_emulator)
    (template,) = sample_records()["lead_events"][:1]
    n = 5000
    prepared = []
    for i in range(n):
        row = dict(to_row(template), event_id=f"ev-{i}", message_id=f"msg-{i}")
        prepared.append(("lead_events", row["event_id"], row))
    fn = sink.InsertRowsFn(PROJECT, dataset, batch_size=500)
    fn.setup()
    try:
        batches = [[(rid, row, None, None) for _, rid, row in prepared[i:i + 500]] for i in range(0, n, 500)]
        t0 = time.monotonic()
        for batch in batches:
            assert fn._insert("lead_events", batch) == []
        insert_s = time.monotonic() - t0
    finally:
        fn.teardown()
    client = bq.client_for(PROJECT, bigquery_emulator)
    latencies = []
    for _ in range(5):
        t0 = time.monotonic()
        assert count(client, dataset, "lead_events") == n
        latencies.append(time.monotonic() - t0)
    print(f"\n[measure] insert_rows_json: {n} rows in {insert_s:.2f}s at batch 500 = {n / insert_s:,.0f} rows/s")
    print(f"[measure] COUNT(*) query latency: median {sorted(latencies)[2] * 1000:.0f} ms, "
          f"min {min(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")


@pytest.mark.parametrize(("spec", "want"), [
    ("leadflow-test:leadflow", ("leadflow-test", "leadflow")),
    ("leadflow-test.leadflow", ("leadflow-test", "leadflow")),
    ("example.com:my-project:lead_data", ("example.com:my-project", "lead_data")),
])
def test_parse_dataset(spec, want):
    assert bq.parse_dataset(spec) == want


@pytest.mark.parametrize("spec", ["", "leadflow", "leadflow-test:", ":leadflow", "leadflow-test.lead-flow",
                                  "Leadflow_Test.leadflow", "p.d"])
def test_parse_dataset_rejects(spec):
    with pytest.raises(ValueError, match="BigQuery dataset"):
        bq.parse_dataset(spec)


def test_sink_rejects_bad_configuration():
    with pytest.raises(ValueError, match="backend"):
        sink.WriteTablesToBigQuery("leadflow-test:leadflow", backend="magic")
    with pytest.raises(ValueError, match="method"):
        sink.WriteTablesToBigQuery("leadflow-test:leadflow", backend="beam", method="FILE_LOADS")
    with pytest.raises(ValueError, match="unknown table"):
        sink.PrepareRows("nope")
    with pytest.raises(TypeError, match="takes LeadEvent"):
        sink.prepare_row(sample_records()["leads"][0], "lead_events")


def test_missing_table_dead_letters_the_batch_without_retrying(bigquery_emulator):
    records = {"source_daily_counts": sample_records()["source_daily_counts"]}
    t0 = time.monotonic()
    result = run_sink(records, sink.WriteTablesToBigQuery(f"{PROJECT}:no_such_dataset"), "missing")
    (dl,) = recorder.take("missing")
    assert dl.error_type == "bigquery_insert_error"
    assert dl.error_message.startswith("insert request rejected: NotFound")
    assert counter(result, "rows_retried") == 0
    assert time.monotonic() - t0 < 30


class FlakyClient:
    """insert_rows_json answering with per-row transient reasons first, then success."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def insert_rows_json(self, table, rows, row_ids=None, **kw):
        self.calls.append(list(row_ids))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_transient_row_errors_are_retried_with_the_same_ids():
    from google.api_core.exceptions import ServiceUnavailable

    prepared = [sink.prepare_row(e, "lead_events") for e in sample_records()["lead_events"][:3]]
    batch = [(rid, row, None, None) for _, rid, row in prepared]
    fn = sink.InsertRowsFn(PROJECT, DATASET, retry_budget_s=5, initial_backoff_s=0.01)
    fn.client = FlakyClient([
        ServiceUnavailable("try later"),
        [{"index": 1, "errors": [{"reason": "backendError", "message": "x"}]},
         {"index": 2, "errors": [{"reason": "invalid", "location": "event_time", "message": "bad 'secret' value"}]}],
        [],
    ])
    out = fn._insert("lead_events", batch)
    ids = [rid for rid, *_ in batch]
    assert fn.client.calls == [ids, ids, [ids[1]]]
    ((dl, _, _),) = out
    assert dl.error_type == "bigquery_insert_error"
    assert dl.error_message == "invalid at event_time: bad '<redacted>' value"
