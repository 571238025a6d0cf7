"""The Leadflow lead pipeline.

Reads inbound lead messages from many providers, parses each with its provider's parser,
normalizes phones (E.164), e-mails and names, recognises the same person across providers with a
stateful per-person DoFn, counts events per source and day, and writes one table per record:
``leads``, ``lead_events``, ``lead_source_history``, ``dead_letters``, ``source_daily_counts``.
Every input unit (a message, or a row of a CSV upload) ends as exactly one ``lead_events`` row or
one ``dead_letters`` row.

Bounded mode (DirectRunner)::

    python -m pipelines.lead_pipeline --input_file=messages.jsonl --output_dir=out/

Each input line mirrors a Pub/Sub message::

    {"message_id": "...", "publish_time": "2026-11-20T10:00:00Z",
     "attributes": {"provider": "meta_lead_ads"}, "data": "<payload text>"}
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from pipelines.options import LeadflowOptions
from schemas.derive import to_row
from schemas.records import TABLES
from transforms.daily_counts import DailySourceCounts
from transforms.dedup import DeduplicatePersons
from transforms.messages import InputLineError, dead_letter_for_line, message_from_json_line
from transforms.normalize import NormalizeLeads
from transforms.parse import ParseMessages

_log = logging.getLogger(__name__)


class LeadGraph(beam.PTransform):
    """InputMessage -> {table name: PCollection of records}. The one graph both modes share."""

    def __init__(self, options: LeadflowOptions):
        super().__init__()
        self.opts = options

    def expand(self, messages):
        o = self.opts
        parsed = messages | "Parse" >> ParseMessages(o.max_payload_bytes, o.google_ads_key, o.source_registry)
        normalized = parsed.units | "Normalize" >> NormalizeLeads(o.default_region)
        deduped = normalized.leads | "Dedup" >> DeduplicatePersons(o.dedup_hold_seconds, o.dedup_ttl_days)
        counts = deduped.events | "DailySourceCounts" >> DailySourceCounts(o.early_firing_seconds)
        dead_letters = (parsed.dead_letters, normalized.dead_letters) | "AllDeadLetters" >> beam.Flatten()
        return {
            "leads": deduped.leads,
            "lead_events": deduped.events,
            "lead_source_history": deduped.history,
            "dead_letters": dead_letters,
            "source_daily_counts": counts,
        }


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


def build_bounded(p: beam.Pipeline, opts: LeadflowOptions) -> dict[str, beam.PCollection]:
    read = p | "ReadMessages" >> ReadMessagesFromFile(opts.input_file)
    tables = dict(read.messages | "Leads" >> LeadGraph(opts))
    tables["dead_letters"] = (tables["dead_letters"], read.dead_letters) | "WithReadDeadLetters" >> beam.Flatten()
    assert set(tables) == set(TABLES), "every table must be written"
    tables | "WriteTables" >> WriteTablesToFiles(opts.output_dir)
    return tables


def run(argv: list[str] | None = None, save_main_session: bool = False) -> beam.runners.runner.PipelineResult:
    """Parse options, build the graph, run it and wait."""
    options = PipelineOptions(argv)
    options.view_as(SetupOptions).save_main_session = save_main_session
    opts = options.view_as(LeadflowOptions)
    opts.validate_leadflow()
    os.makedirs(opts.output_dir, exist_ok=True)
    p = beam.Pipeline(options=options)
    build_bounded(p, opts)
    result = p.run()
    result.wait_until_finish()
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
