"""The lead pipeline's input and output edges: JSONL files and Pub/Sub in; files, BigQuery and Pub/Sub out.

``LeadGraph`` (``pipelines.graph``) knows none of them; ``pipelines.lead_pipeline.build`` connects them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from datetime import UTC
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.options import LeadflowOptions
from schemas.derive import to_row
from schemas.records import DeadLetter, Lead
from transforms.assign import AGENT_EVENT_STAGE
from transforms.bigquery_sink import WriteTablesToBigQuery
from transforms.messages import InputLineError, InputMessage, dead_letter_for_line, message_from_json_line

_log = logging.getLogger(__name__)


class ReadMessageLinesDoFn(beam.DoFn):
    """A JSONL line -> InputMessage stamped with its publish time, or a ``read`` dead letter."""

    DEAD_LETTERS = "dead_letters"

    def __init__(self):
        self.internal_errors = Metrics.counter("read", "internal_errors")

    def process(self, line):
        try:
            msg = message_from_json_line(line)
        except InputLineError as e:
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTERS, dead_letter_for_line(line, e))
            return
        except Exception as e:  # a reader bug must not end the run: the line is dead-lettered, counted and logged
            self.internal_errors.inc()
            _log.exception("reading an input line failed (%s)", type(e).__name__)
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTERS, dead_letter_for_line(
                line, InputLineError(f"{type(e).__name__} while reading the line"), "internal_error"))
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


def read_inputs(p: beam.Pipeline, opts: LeadflowOptions) -> tuple[dict[str, beam.PCollection], list]:
    """``{"messages": ..., "agent_events": ... (when configured)}`` from files or Pub/Sub, and the dead letters of
    unreadable input lines."""
    if opts.input_file:
        read = p | "ReadMessages" >> ReadMessagesFromFile(opts.input_file)
        inputs, read_dead = {"messages": read.messages}, [read.dead_letters]
    else:
        inputs = {"messages": p | "ReadMessages" >> ReadMessagesFromPubSub(opts.input_subscription,
                                                                             opts.timestamp_attribute)}
        read_dead = []
    if opts.agent_events_file:
        read = p | "ReadAgentEvents" >> ReadMessagesFromFile(opts.agent_events_file)
        inputs["agent_events"] = read.messages
        read_dead.append(read.dead_letters | "AgentEventStage" >> beam.Map(
            lambda d: dataclasses.replace(d, stage=AGENT_EVENT_STAGE)))
    elif opts.agent_events_subscription:
        inputs["agent_events"] = p | "ReadAgentEvents" >> ReadMessagesFromPubSub(opts.agent_events_subscription, None)
    return inputs, read_dead


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
    """A lead offered to an agent (or, without routing, a new lead; or a later event sent to the agent who owns
    the person, outcome ``update``) as the JSON CRM consumers receive, with
    attributes to filter subscriptions on: territory, team, agent, priority; ordered per lead."""
    outcome = "update" if lead.routing_status == "update" else "new"  # update: a later event, to its owner
    attributes = {"lead_id": lead.lead_id, "outcome": outcome, "provider": lead.primary_provider,
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
    rejected = tables | "WriteBigQuery" >> WriteTablesToBigQuery(
        opts.bq_dataset, backend=opts.bq_backend, method=opts.bq_method)
    unwritable = {"dead_letters": rejected} | "WriteSinkDeadLetters" >> WriteTablesToBigQuery(
        opts.bq_dataset, backend=opts.bq_backend, method=opts.bq_method)
    unwritable | "LogUnwritable" >> beam.ParDo(LogSinkFailures())
    return rejected
