"""The Leadflow lead pipeline.

Reads inbound lead messages from many providers, parses each with its provider's parser,
normalizes phones (E.164), e-mails and names, recognises the same person across providers with a
stateful per-person DoFn, scores each new lead (LightGBM via BentoML or in-process, with a rule-based
fallback), enriches it from reference data, routes it to a territory, team and agent (weighted round
robin, re-assigned when the agent does not accept within the SLA), counts events per source and day,
and writes one table per record: ``leads``, ``lead_events``, ``lead_source_history``, ``dead_letters``,
``source_daily_counts``, ``lead_assignments``, ``agent_status``, ``source_registrations``; deliveries
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

One graph (``LeadGraph``) serves both modes; only the input and output edges differ.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from datetime import UTC
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from infra.pubsub_emulator.client import lift_emulator_message_limit
from pipelines.dataflow import apply_dataflow_defaults
from pipelines.direct import speed_up_direct_runner
from pipelines.options import LeadflowOptions
from schemas.derive import to_row
from schemas.records import TABLES, DeadLetter, Lead
from transforms.assign import AGENT_EVENT_STAGE, ReferenceConfig, RouteAndAssign
from transforms.daily_counts import DailySourceCounts
from transforms.dedup import DeduplicatePersons
from transforms.enrich import RegisterUnknownSources
from transforms.messages import InputLineError, InputMessage, dead_letter_for_line, message_from_json_line
from transforms.normalize import NormalizeLeads
from transforms.parse import ParseMessages
from transforms.score import ScoreLeads

_log = logging.getLogger(__name__)


class LeadGraph(beam.PTransform):
    """InputMessage (+ agent-event messages) -> {table name: PCollection of records}, plus the
    ``deliveries`` and ``manual_review`` streams. The one graph both modes share."""

    def __init__(self, options: LeadflowOptions, agent_events: beam.PCollection | None = None,
                 clock=None):
        super().__init__()
        self.opts = options
        self.agent_events = agent_events
        self.clock = clock

    def expand(self, messages):
        o = self.opts
        streaming = messages.is_bounded is False
        parsed = messages | "Parse" >> ParseMessages(o.max_payload_bytes, o.google_ads_key, o.source_registry)
        normalized = parsed.units | "Normalize" >> NormalizeLeads(o.default_region)
        deduped = normalized.leads | "Dedup" >> DeduplicatePersons(o.dedup_hold_seconds, o.dedup_ttl_days)
        counts = deduped.events | "DailySourceCounts" >> DailySourceCounts(o.early_firing_seconds)
        registrations = deduped.events | "RegisterSources" >> RegisterUnknownSources(o.unverified_source_reliability)
        dead_letters = [parsed.dead_letters, normalized.dead_letters]
        leads = deduped.leads
        if o.scorer != "none":
            leads = leads | "Score" >> ScoreLeads(
                o.scorer, url=o.scorer_url, model_tag=o.scorer_model, model_store=o.scorer_model_store,
                hot=o.hot_threshold, warm=o.warm_threshold, retries=o.scorer_retries,
                token_secret=o.scorer_token_secret)
        out = {
            "lead_events": deduped.events,
            "lead_source_history": deduped.history,
            "source_daily_counts": counts,
            "source_registrations": registrations,
        }
        if o.routing == "on":
            config = ReferenceConfig(o.reference_data, o.source_registry,
                                     o.reference_refresh_seconds if streaming else 0.0,
                                     o.unverified_source_reliability)
            routed = leads | "Route" >> RouteAndAssign(
                config, o.assignment_sla_seconds, streaming, periodic_side_input=streaming and is_dataflow(o),
                agent_messages=self.agent_events, clock=self.clock)
            out.update(leads=routed["lead"], deliveries=routed["delivery"], manual_review=routed["manual_review"],
                       lead_assignments=routed["assignment"], agent_status=routed["agent_status"])
            if routed["dead_letters"] is not None:
                dead_letters.append(routed["dead_letters"])
        else:
            out.update(leads=leads, deliveries=leads)
        out["dead_letters"] = dead_letters | "AllDeadLetters" >> beam.Flatten()
        return out


def is_dataflow(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    return "dataflow" in str(runner).lower()


class ReadMessageLinesDoFn(beam.DoFn):
    """A JSONL line -> InputMessage stamped with its publish time, or a ``read`` dead letter."""

    DEAD_LETTERS = "dead_letters"

    def process(self, line):
        try:
            msg = message_from_json_line(line)
        except InputLineError as e:
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTERS, dead_letter_for_line(line, e))
            return
        yield beam.window.TimestampedValue(msg, msg.publish_time.timestamp())


class ReadMessagesFromFile(beam.PTransform):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadLines" >> beam.io.ReadFromText(self.pattern, coder=beam.coders.BytesCoder())
            | "DecodeLines" >> beam.ParDo(ReadMessageLinesDoFn()).with_outputs(
                ReadMessageLinesDoFn.DEAD_LETTERS, main="messages")
        )


def to_json_line(record: Any) -> str:
    return json.dumps(to_row(record), ensure_ascii=False, separators=(",", ":"))


class WriteTablesToFiles(beam.PTransform):
    """{table: records} -> ``<output_dir>/<table>.jsonl`` (one file per table, empty when no rows)."""

    def __init__(self, output_dir: str):
        super().__init__()
        self.output_dir = output_dir

    def expand(self, tables):
        for name, records in tables.items():
            (
                records
                | f"{name}/ToJson" >> beam.Map(to_json_line)
                | f"{name}/Write" >> beam.io.WriteToText(
                    os.path.join(self.output_dir, name), file_name_suffix=".jsonl", num_shards=1,
                    shard_name_template="")
            )
        return beam.pvalue.PDone(next(iter(tables.values())).pipeline)


def input_message_from_pubsub(msg: beam.io.PubsubMessage) -> InputMessage:
    """Beam's PubsubMessage (with attributes, id and publish time) -> InputMessage."""
    publish_time = msg.publish_time
    if publish_time is not None:
        publish_time = (publish_time.replace(tzinfo=UTC) if publish_time.tzinfo is None
                        else publish_time.astimezone(UTC))
    return InputMessage(str(msg.message_id), bytes(msg.data or b""), dict(msg.attributes or {}), publish_time)


class ReadMessagesFromPubSub(beam.PTransform):
    def __init__(self, subscription: str, timestamp_attribute: str | None):
        super().__init__()
        self.subscription = subscription
        self.timestamp_attribute = timestamp_attribute

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadPubSub" >> beam.io.ReadFromPubSub(
                subscription=self.subscription, with_attributes=True, timestamp_attribute=self.timestamp_attribute)
            | "ToInputMessage" >> beam.Map(input_message_from_pubsub)
        )


def delivery_message(lead: Lead) -> beam.io.PubsubMessage:
    """A lead offered to an agent (or, without routing, a new lead) as the JSON CRM consumers receive, with
    attributes to filter subscriptions on: territory, team, agent, priority; ordered per lead."""
    attributes = {"lead_id": lead.lead_id, "outcome": "new", "provider": lead.primary_provider,
                  "source_id": lead.primary_source, "is_test": str(lead.is_test).lower()}
    if lead.priority_tier is not None:
        attributes.update(priority=lead.priority_tier, score=f"{lead.score:.4f}", score_source=lead.score_source)
    for name in ("territory", "team", "agent_id", "routing_status", "routing_reason"):
        value = getattr(lead, name)
        if value is not None:
            attributes["agent" if name == "agent_id" else name] = value
    return beam.io.PubsubMessage(to_json_line(lead).encode("utf-8"), attributes, ordering_key=lead.lead_id)


def dead_letter_message(dead: DeadLetter) -> beam.io.PubsubMessage:
    attributes = {"stage": dead.stage, "error_type": dead.error_type, "message_id": dead.message_id}
    if dead.provider:
        attributes["provider"] = dead.provider
    return beam.io.PubsubMessage(to_json_line(dead).encode("utf-8"), attributes)


class PublishToPubSub(beam.PTransform):
    """Deliveries, manual-review leads and dead letters to their Pub/Sub topics (each may be absent)."""

    def __init__(self, delivery_topic: str | None, dead_letter_topic: str | None,
                 manual_review_topic: str | None = None):
        super().__init__()
        self.topics = {"deliveries": delivery_topic, "manual_review": manual_review_topic,
                       "dead_letters": dead_letter_topic}

    def expand(self, streams):
        for name, topic in self.topics.items():
            if not topic or name not in streams:
                continue
            to_message = dead_letter_message if name == "dead_letters" else delivery_message
            (
                streams[name]
                | f"{name}/ToMessage" >> beam.Map(to_message)
                | f"{name}/Publish" >> beam.io.WriteToPubSub(
                    topic, with_attributes=True, publish_with_ordering_key=name != "dead_letters")
            )
        return beam.pvalue.PDone(streams["dead_letters"].pipeline)


class LogSinkFailures(beam.DoFn):
    """Dead letters that could not even be written to the dead_letters table: counted and logged by id."""

    def __init__(self):
        self.failed = Metrics.counter("sink", "dead_letters_unwritable")

    def process(self, dead: DeadLetter):
        self.failed.inc()
        _log.error("dead letter for message_id=%s could not be written: %s", dead.message_id, dead.error_type)


def write_bigquery(tables: dict[str, beam.PCollection], opts: LeadflowOptions) -> beam.PCollection:
    """Every table to BigQuery; rows BigQuery rejects become dead letters, written to dead_letters too.
    Returns the sink's dead letters (so they also reach the dead-letter topic)."""
    from transforms.bigquery_sink import WriteTablesToBigQuery

    rejected = tables | "WriteBigQuery" >> WriteTablesToBigQuery(
        opts.bq_dataset, backend=opts.bq_backend, method=opts.bq_method)
    unwritable = {"dead_letters": rejected} | "WriteSinkDeadLetters" >> WriteTablesToBigQuery(
        opts.bq_dataset, backend=opts.bq_backend, method=opts.bq_method)
    unwritable | "LogUnwritable" >> beam.ParDo(LogSinkFailures())
    return rejected


def build(p: beam.Pipeline, opts: LeadflowOptions, clock=None) -> dict[str, beam.PCollection]:
    """The whole job: input edges -> LeadGraph -> output edges. Returns the tables (and streams)."""
    read_dead = []
    if opts.input_file:
        read = p | "ReadMessages" >> ReadMessagesFromFile(opts.input_file)
        messages, read_dead = read.messages, [read.dead_letters]
    else:
        messages = p | "ReadMessages" >> ReadMessagesFromPubSub(opts.input_subscription, opts.timestamp_attribute)
    agent_events = None
    if opts.agent_events_file:
        read = p | "ReadAgentEvents" >> ReadMessagesFromFile(opts.agent_events_file)
        agent_events = read.messages
        read_dead.append(read.dead_letters | "AgentEventStage" >> beam.Map(
            lambda d: dataclasses.replace(d, stage=AGENT_EVENT_STAGE)))
    elif opts.agent_events_subscription:
        agent_events = p | "ReadAgentEvents" >> ReadMessagesFromPubSub(opts.agent_events_subscription, None)
    out = dict(messages | "Leads" >> LeadGraph(opts, agent_events, clock=clock))
    if read_dead:
        out["dead_letters"] = [out["dead_letters"], *read_dead] | "WithReadDeadLetters" >> beam.Flatten()
    streams = {name: out.pop(name) for name in ("deliveries", "manual_review") if name in out}
    tables = out
    assert set(tables) <= set(TABLES), f"unknown tables {set(tables) - set(TABLES)}"
    if opts.output_dir:
        tables | "WriteTables" >> WriteTablesToFiles(opts.output_dir)
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
    if not is_dataflow(options):
        lift_emulator_message_limit()  # 10 MB messages from the local emulator, as from Pub/Sub (see the module)
        speed_up_direct_runner()  # per-bundle DoFn inspection and pickling, 10-message reads (pipelines/direct.py)
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
