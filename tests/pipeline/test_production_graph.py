"""The production (Dataflow) job graph, built with the production options and inspected without submitting it.

Dataflow submission cannot run offline (even ``--dry_run`` submission reaches for Cloud Storage), so the graph is
built with ``pipelines.lead_pipeline.build`` exactly as ``run()`` builds it for Dataflow, and ``to_runner_api()``
is inspected: the stateful steps carry the names pinned in ``infra/deploy/dataflow/stateful_steps.txt``, Beam's Pub/Sub
and BigQuery transforms are the sources and sinks, and nothing local-only (the emulator BigQuery backend, text
files, TestStream) leaked in.

When a stateful step is renamed ON PURPOSE: ``python -m infra.deploy.dataflow.graph --regen`` rewrites the pinned list;
running jobs then need ``--update --transform_name_mapping`` (docs/runbook.md), or their state is lost.
"""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from infra.deploy.dataflow import graph
from pipelines.dataflow import DEFAULT_MAX_WORKERS, SETUP_FILE, apply_dataflow_defaults
from schemas.derive import bigquery_schema
from schemas.records import TABLES

PUBSUB = "apache_beam.io.gcp.pubsub."
LOCAL_ONLY_FN_CLASSES = {
    "transforms.bigquery_sink.InsertRowsFn",  # the emulator backend (--bq_backend=client)
    "apache_beam.io.iobase._WriteBundleDoFn",  # file sinks (WriteToText of --output_dir)
    "pipelines.io.ReadMessageLinesDoFn",  # --input_file
}


@pytest.fixture(scope="module")
def built():
    pipeline, options = graph.build_production_pipeline()
    proto = pipeline.to_runner_api()
    return options, proto, list(graph.steps(proto))


def _arg(name: str) -> str:
    return next(a.split("=", 1)[1] for a in graph.PRODUCTION_ARGS if a.startswith(f"--{name}="))


def test_stateful_steps_are_the_pinned_ones(built):
    _, proto, _ = built
    names = [s.name for s in graph.stateful_steps(proto)]
    pinned = graph.read_pinned()
    assert pinned, f"{graph.STATEFUL_STEPS_PATH} is missing or empty: run python -m infra.deploy.dataflow.graph --regen"
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(pinned), (
        "stateful step names changed; a running job's --update would lose or reject their state.\n"
        f"  pinned only: {sorted(set(pinned) - set(names))}\n  graph only:  {sorted(set(names) - set(pinned))}\n"
        "If intended: python -m infra.deploy.dataflow.graph --regen, and map old -> new names with "
        "--transform_name_mapping when updating (docs/runbook.md).")


def test_stateful_steps_have_stable_readable_names(built):
    _, proto, _ = built
    stateful = graph.stateful_steps(proto)
    assert stateful, "the production graph has no stateful step (dedup at least keeps state)"
    assert graph.unstable_names(s.name for s in stateful) == []
    for s in stateful:
        assert all(part.strip() for part in s.name.split("/")), s.name
        assert s.fn_class and s.fn_class.split(".")[0] in {"transforms", "pipelines", "scoring"}, (s.name, s.fn_class)
    assert any(s.fn_class == "transforms.dedup.DedupDoFn" for s in stateful)


def test_unstable_label_detector_catches_code_location_labels():
    assert graph.unstable_names([
        "Leads/Dedup/Map(<lambda at dedup.py:277>)",
        "Leads/Route/ParDo(<function f at 0x7f3db7cbb190>)",
        "Leads/Dedup/DecidePerPerson/ParDo(DedupDoFn)",
    ]) == ["Leads/Dedup/Map(<lambda at dedup.py:277>)", "Leads/Route/ParDo(<function f at 0x7f3db7cbb190>)"]


def test_reads_both_subscriptions_with_beam_read_from_pubsub(built):
    _, _, steps = built
    reads = [s.detail for s in steps if s.transform_class == PUBSUB + "ReadFromPubSub"]
    assert {r._source.full_subscription for r in reads} == {_arg("input_subscription"),
                                                            _arg("agent_events_subscription")}
    assert all(r.with_attributes for r in reads)
    assert sum(s.urn == "beam:transform:pubsub_read:v1" for s in steps) == len(reads)


def test_publishes_every_topic_with_beam_write_to_pubsub(built):
    _, _, steps = built
    writes = [s.detail for s in steps if s.transform_class == PUBSUB + "WriteToPubSub"]
    topics = [w.full_topic for w in writes]
    assert sorted(topics) == sorted({_arg("delivery_topic"), _arg("dead_letter_topic"), _arg("manual_review_topic")})
    assert all(w.with_attributes for w in writes)


def test_every_table_goes_through_beam_write_to_bigquery(built):
    _, _, steps = built
    configs = [s.detail for s in steps if s.urn == graph.WRITE_TO_BIGQUERY_URN]
    by_table: dict[str, list[dict]] = {}
    for c in configs:
        by_table.setdefault(c["table"], []).append(c)
    written = {name: spec for name, spec in TABLES.items() if spec.written_by_pipeline}
    assert set(by_table) == {f"{graph.DATASET}.{name}" for name in written}
    for name, spec in written.items():
        for c in by_table[f"{graph.DATASET}.{name}"]:
            assert c["schema"] == {"fields": bigquery_schema(spec.record)}, name
            assert c["create_disposition"] == "CREATE_NEVER", name  # tables come from Terraform
            assert c["write_disposition"] == "WRITE_APPEND", name
            assert c["method"] == "STREAMING_INSERTS", name
            assert c["additional_bq_parameters"] == {
                "timePartitioning": {"type": "DAY", "field": spec.partition_field},
                "clustering": {"fields": list(spec.cluster_fields)}}, name


def test_nothing_local_only_leaked_in(built):
    _, _, steps = built
    leaked = [(s.name, s.fn_class) for s in steps if s.fn_class in LOCAL_ONLY_FN_CLASSES]
    assert leaked == []
    assert not [s.name for s in steps if s.urn == "beam:transform:teststream:v1"]
    assert not [s.name for s in steps if s.fn_class and s.fn_class.startswith(("apache_beam.io.textio",
                                                                                 "apache_beam.io.filebasedsink"))]
    local_labels = {"InsertRows", "WriteToText", "ReadFromText", "WriteTables", "ReadLines"}
    assert not [s.name for s in steps if local_labels & set(s.name.split("/"))]


def test_production_options_carry_the_dataflow_defaults(built):
    options, _, _ = built
    assert options.view_as(StandardOptions).streaming is True
    assert options.view_as(GoogleCloudOptions).enable_streaming_engine is True
    workers = options.view_as(WorkerOptions)
    assert workers.autoscaling_algorithm == "THROUGHPUT_BASED"
    assert workers.max_num_workers == DEFAULT_MAX_WORKERS
    setup = options.view_as(SetupOptions)
    assert setup.setup_file == str(SETUP_FILE) and SETUP_FILE.is_file()
    assert setup.save_main_session is False


def test_dataflow_defaults_never_override_explicit_settings():
    options = PipelineOptions([
        "--runner=DataflowRunner", "--input_subscription=projects/p/subscriptions/s", "--max_num_workers=50",
        "--autoscaling_algorithm=NONE", "--setup_file=/elsewhere/setup.py", "--save_main_session"])
    apply_dataflow_defaults(options)
    workers, setup = options.view_as(WorkerOptions), options.view_as(SetupOptions)
    assert (workers.max_num_workers, workers.autoscaling_algorithm) == (50, "NONE")
    assert (setup.setup_file, setup.save_main_session) == ("/elsewhere/setup.py", True)
    assert options.view_as(StandardOptions).streaming is True  # Pub/Sub input


def test_custom_sdk_container_needs_no_setup_file():
    options = PipelineOptions(["--runner=dataflow", "--input_subscription=projects/p/subscriptions/s",
                               "--sdk_container_image=us-docker.pkg.dev/p/leadflow/worker:1"])
    apply_dataflow_defaults(options)
    assert options.view_as(SetupOptions).setup_file is None
    assert options.view_as(WorkerOptions).max_num_workers == DEFAULT_MAX_WORKERS


def test_a_file_backfill_on_dataflow_stays_batch():
    options = PipelineOptions(["--runner=DataflowRunner", "--input_file=gs://b/in/*.jsonl"])
    apply_dataflow_defaults(options)
    assert not options.view_as(StandardOptions).streaming
    assert options.view_as(WorkerOptions).autoscaling_algorithm == "THROUGHPUT_BASED"


def test_other_runners_are_left_alone():
    argv = ["--runner=DirectRunner", "--input_subscription=projects/p/subscriptions/s"]
    options = PipelineOptions(argv)
    before = options.get_all_options()
    apply_dataflow_defaults(options)
    assert options.get_all_options() == before
    apply_dataflow_defaults(PipelineOptions([]))  # no runner at all: nothing to do, no error
