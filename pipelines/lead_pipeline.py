"""The Leadflow lead pipeline.

Reads inbound lead messages from many providers, parses each with its provider's parser,
normalizes phones (E.164), e-mails and names, recognises the same person across providers, phones
and e-mails on arrival (an identity store outside the job), scores each new lead (LightGBM via BentoML
or in-process, with a rule-based fallback), enriches it from reference data, routes it to a territory,
team and agent (weighted round robin, re-assigned when the agent does not accept within the SLA), counts
events per source and day, and writes one table per record: ``leads``, ``lead_events``,
``lead_source_history``, ``dead_letters``, ``source_daily_counts``, ``lead_assignments``, ``agent_status``,
``source_registrations``, ``lead_merges``,
``lead_versions``, ``identifier_guards`` (bounded runs also ``leads_current.jsonl``); deliveries
(one per offer to an agent), manual-review leads and dead letters go to Pub/Sub topics.
Every input unit (a message, or a row of a CSV upload) ends as exactly one ``lead_events`` row or
one ``dead_letters`` row.

Bounded mode (DirectRunner)::

    python -m pipelines.lead_pipeline --input_file=messages.jsonl --output_dir=out/

Each input line mirrors a Pub/Sub message::

    {"message_id": "...", "publish_time": "2026-11-20T10:00:00Z",
     "attributes": {"provider": "meta_lead_ads"}, "data": "<payload text>"}

Streaming mode (Pub/Sub in; BigQuery, deliveries and dead letters out)::

    python -m pipelines.lead_pipeline --streaming \
        --input_subscription=projects/P/subscriptions/S --bq_dataset=P:D \
        --delivery_topic=projects/P/topics/T --dead_letter_topic=projects/P/topics/DL

One graph (``pipelines.graph.LeadGraph``) serves both modes; only the input and output edges
(``pipelines.io``) differ. This module runs unpatched on every runner: local entry points (``leadflow run``,
the demo, the benches, the tests) apply the DirectRunner speed-ups of ``infra.local.speedups`` first.
"""

from __future__ import annotations

import logging
import os
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from pipelines.dataflow import apply_dataflow_defaults, is_dataflow
from pipelines.graph import LeadGraph, StageConfigs
from pipelines.io import (
    PublishToPubSub,
    WriteTablesToFiles,
    read_inputs,
    write_bigquery,
)
from pipelines.options import LeadflowOptions
from schemas.records import TABLES
from transforms.lead_record import CurrentLeads


def build(p: beam.Pipeline, opts: LeadflowOptions, clock=None) -> dict[str, beam.PCollection]:
    """The whole job: input edges -> LeadGraph -> output edges. Returns the tables (and streams)."""
    inputs, read_dead = read_inputs(p, opts)
    streaming = inputs["messages"].is_bounded is False
    out = dict(inputs | "Leads" >> LeadGraph(StageConfigs.from_options(opts, streaming, clock)))
    if read_dead:
        out["dead_letters"] = [out["dead_letters"], *read_dead] | "WithReadDeadLetters" >> beam.Flatten()
    streams = {name: out.pop(name) for name in ("deliveries", "manual_review") if name in out}
    tables = out
    assert set(tables) <= set(TABLES), f"unknown tables {set(tables) - set(TABLES)}"
    if opts.output_dir:
        current = tables | "CurrentLeads" >> CurrentLeads()
        {**tables, "leads_current": current} | "WriteTables" >> WriteTablesToFiles(opts.output_dir)
    published = {**streams, "dead_letters": tables["dead_letters"]}
    if opts.bq_dataset:
        rejected = write_bigquery(tables, opts)
        published["dead_letters"] = (tables["dead_letters"], rejected) | "WithSinkDeadLetters" >> beam.Flatten()
    if opts.delivery_topic or opts.dead_letter_topic or opts.manual_review_topic:
        published | "Publish" >> PublishToPubSub(opts.delivery_topic, opts.dead_letter_topic, opts.manual_review_topic)
    return {**tables, **streams}


def run(argv: list[str] | None = None, save_main_session: bool = False) -> beam.runners.runner.PipelineResult:
    """Parse options, build the graph, run it and wait (a streaming job runs until cancelled)."""
    options = PipelineOptions(argv)
    options.view_as(SetupOptions).save_main_session = save_main_session
    opts = options.view_as(LeadflowOptions)
    opts.validate_leadflow()
    apply_dataflow_defaults(options)
    if opts.output_dir:
        os.makedirs(opts.output_dir, exist_ok=True)
    p = beam.Pipeline(options=options)
    build(p, opts)
    result = p.run()
    if not (is_dataflow(options) and options.view_as(StandardOptions).streaming):
        result.wait_until_finish()  # a submitted Dataflow streaming job runs on; do not block the launcher
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
