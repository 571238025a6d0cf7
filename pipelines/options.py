"""Pipeline options: every setting of the lead pipeline, as a PipelineOptions subclass.

Input edge: ``--input_file`` (bounded) or ``--input_subscription`` (streaming from Pub/Sub).
Output edges: ``--output_dir`` (JSONL files, bounded only) and/or ``--bq_dataset`` (BigQuery),
plus the optional ``--delivery_topic`` and ``--dead_letter_topic`` (Pub/Sub).
"""

from __future__ import annotations

import dataclasses
import os

import phonenumbers
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from schemas.bigquery import parse_dataset
from schemas.resources import SUBSCRIPTION_PATH, TOPIC_PATH
from scoring import model_store
from transforms.parse import DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_UNIT_SECONDS
from transforms.parsers.base import LIMIT_ERRORS, ParseLimits

LOCAL_IDENTITY_STORE = ".leadflow/identity.sqlite"  # local streaming's default: survives a restart


class LeadflowOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        g = parser.add_argument_group("Leadflow input")
        g.add_argument("--input_file", help="Bounded mode: JSONL file (glob allowed) of messages.")
        g.add_argument("--input_subscription",
                       help="Streaming mode: Pub/Sub subscription projects/P/subscriptions/S to read leads from.")
        g.add_argument("--agent_events_file",
                       help="Bounded mode: JSONL file of agent events (accepted, rejected, online, away, offline).")
        g.add_argument("--agent_events_subscription",
                       help="Streaming mode: Pub/Sub subscription projects/P/subscriptions/S of agent events.")
        g.add_argument("--timestamp_attribute", default=None,
                       help="Streaming: message attribute holding the event time (RFC 3339 or ms since epoch); "
                            "default: the Pub/Sub publish time.")
        g = parser.add_argument_group("Leadflow output")
        g.add_argument("--output_dir", help="Bounded mode: directory for <table>.jsonl outputs.")
        g.add_argument("--bq_dataset", help="BigQuery dataset PROJECT:DATASET (or PROJECT.DATASET) for every table.")
        g.add_argument("--bq_backend", default="beam", choices=("beam", "client"),
                       help="'beam': Beam's WriteToBigQuery (Dataflow, real BigQuery); 'client': batched "
                            "insert_rows_json with row ids (the local BigQuery emulator, BIGQUERY_EMULATOR_HOST).")
        g.add_argument("--bq_method", default="STREAMING_INSERTS", choices=("STREAMING_INSERTS", "STORAGE_WRITE_API"),
                       help="Write method of the 'beam' backend.")
        g.add_argument("--delivery_topic", help="Pub/Sub topic projects/P/topics/T for new leads (CRM deliveries).")
        g.add_argument("--manual_review_topic",
                       help="Pub/Sub topic projects/P/topics/T for leads no agent could take (manual review).")
        g.add_argument("--dead_letter_topic", help="Pub/Sub topic projects/P/topics/T for dead letters.")
        g = parser.add_argument_group("Leadflow scoring")
        g.add_argument("--scorer", default="none", choices=("none", "inprocess", "bentoml"),
                       help="'bentoml': the BentoML scorer over HTTP (--scorer_url); 'inprocess': the LightGBM "
                            "model from the BentoML store in the worker; 'none': leads are not scored.")
        g.add_argument("--scorer_url", default=os.environ.get("LEADFLOW_SCORER_URL"),
                       help="BentoML scorer base URL (default $LEADFLOW_SCORER_URL); the bearer token comes from "
                            "$LEADFLOW_SCORER_TOKEN.")
        g.add_argument("--scorer_token_secret", default=None,
                       help="Secret Manager secret projects/P/secrets/S holding the scorer's bearer token, read by "
                            "the workers when LEADFLOW_SCORER_TOKEN is not in their environment (Dataflow).")
        g.add_argument("--scorer_retries", type=int, default=3,
                       help="Retries of a failed scorer request before the fallback score is used (default 3).")
        g.add_argument("--scorer_model", default=model_store.LATEST, help="Model tag for --scorer=inprocess.")
        g.add_argument("--scorer_model_store", default=None,
                       help="BentoML model store directory for --scorer=inprocess (default: $BENTOML_HOME/models).")
        g.add_argument("--hot_threshold", type=float, default=0.6, help="Score at or above which a lead is hot.")
        g.add_argument("--warm_threshold", type=float, default=0.3, help="Score at or above which a lead is warm.")
        g = parser.add_argument_group("Leadflow processing")
        g.add_argument("--default_region", default="US",
                       help="Region for phone numbers without a country code or a payload country (default US).")
        g.add_argument("--max_payload_bytes", type=int, default=DEFAULT_MAX_PAYLOAD_BYTES,
                       help="Larger payloads are dead-lettered (default 1 MB).")
        g.add_argument("--max_unit_seconds", type=float, default=DEFAULT_MAX_UNIT_SECONDS,
                       help="Time budget for parsing one message; an overrun is a processing_timeout dead letter "
                            "(default 2 s).")
        for limit in dataclasses.fields(ParseLimits):  # one option per parse limit, named as the limit
            g.add_argument(f"--{limit.name}", type=int, default=limit.default,
                           help=f"Parse limit (default {limit.default:,}); a breach is a {LIMIT_ERRORS[limit.name]} "
                                "dead letter (docs/input-limits.md).")
        g.add_argument("--dedup_ttl_days", type=float, default=90.0,
                       help="Days after a person's newest event when they are forgotten (a new lead; default 90).")
        g.add_argument("--identity_store", default=None,
                       help="Where identity state lives: memory | sqlite:PATH | "
                            "bigtable:projects/P/instances/I/tables/T. Default: memory for bounded runs, "
                            f"sqlite:{LOCAL_IDENTITY_STORE} for local streaming; Dataflow needs bigtable:...")
        g.add_argument("--identity_max_companions", type=int, default=3,
                       help="An identifier seen with more distinct other identifiers than this within "
                            "--identity_fan_in_days is shared and stops linking people (default 3).")
        g.add_argument("--identity_fan_in_days", type=float, default=30.0,
                       help="The fan-in guard's window in days (default 30).")
        g.add_argument("--early_firing_seconds", type=int, default=60,
                       help="Streaming: how often daily source counts emit updated early panes.")
        g = parser.add_argument_group("Leadflow enrichment and routing")
        g.add_argument("--reference_data", default=None,
                       help="Where the reference tables (sources, territories, teams, agents) live: a directory "
                            "of CSV files, or bq://PROJECT.DATASET for BigQuery tables ref_sources, "
                            "ref_territories, ref_teams, ref_agents (default: the bundled "
                            "transforms/reference_data).")
        g.add_argument("--source_registry", default=None,
                       help="Source registry CSV overriding the one in --reference_data.")
        g.add_argument("--reference_refresh_seconds", type=float, default=300.0,
                       help="Streaming: how often reference data is reloaded without a restart (default 300).")
        g.add_argument("--routing", default="on", choices=("on", "off"),
                       help="'on': enrich, route to territory, team and agent; 'off': stop after scoring.")
        g.add_argument("--assignment_sla_seconds", type=float, default=120.0,
                       help="Seconds an agent has to accept a lead before it is re-assigned (default 120).")
        g.add_argument("--max_queue_seconds", type=float, default=900.0,
                       help="Seconds a lead may wait for a free agent of its team before manual review (default "
                            "900; counted from the shift start when the whole team is off shift).")
        g.add_argument("--overflow_seconds", type=float, default=None,
                       help="Seconds a waiting lead stays with its team before it moves to the team's "
                            "overflow_team (teams.csv); default: never.")
        g.add_argument("--max_missed_offers", type=int, default=1,
                       help="Offers an agent may let expire in a row before it is set offline until an 'online' "
                            "event (default 1).")
        g.add_argument("--unverified_source_reliability", type=float, default=0.3,
                       help="Reliability weight given to automatically registered (unknown) sources.")
        g.add_argument("--google_ads_key", default=os.environ.get("LEADFLOW_GOOGLE_ADS_KEY"),
                       help="Expected google_key of Google Ads lead forms (default: $LEADFLOW_GOOGLE_ADS_KEY). "
                            "When set, leads with another key are dead-lettered.")

    def validate_leadflow(self) -> None:
        """Clear errors for option combinations that cannot run; turns streaming on for Pub/Sub input."""
        if self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"--default_region={self.default_region!r} is not a region phonenumbers knows "
                             "(use an ISO 3166-1 alpha-2 code such as US, GB, IN)")
        if self.max_payload_bytes <= 0:
            raise ValueError("--max_payload_bytes must be positive")
        if not self.max_unit_seconds > 0:
            raise ValueError("--max_unit_seconds must be positive")
        if self.dedup_ttl_days <= 0 or self.identity_fan_in_days <= 0 or self.identity_max_companions < 1:
            raise ValueError("--dedup_ttl_days and --identity_fan_in_days must be positive, "
                             "--identity_max_companions at least 1")
        if self.identity_store is not None:
            from transforms.identity_store import check_spec

            check_spec(self.identity_store)
        if not 0.0 <= self.warm_threshold <= self.hot_threshold <= 1.0:
            raise ValueError("tier thresholds need 0 <= --warm_threshold <= --hot_threshold <= 1")
        if self.scorer == "bentoml" and not self.scorer_url:
            raise ValueError("--scorer=bentoml needs --scorer_url (or LEADFLOW_SCORER_URL)")
        if bool(self.input_file) == bool(self.input_subscription):
            raise ValueError("give exactly one input: --input_file (bounded) or --input_subscription (streaming)")
        if self.input_subscription and not SUBSCRIPTION_PATH.match(self.input_subscription):
            raise ValueError("--input_subscription must look like projects/PROJECT/subscriptions/NAME")
        for name in ("delivery_topic", "dead_letter_topic"):
            value = getattr(self, name)
            if value and not TOPIC_PATH.match(value):
                raise ValueError(f"--{name} must look like projects/PROJECT/topics/NAME")
        if self.bq_dataset:
            try:
                parse_dataset(self.bq_dataset)
            except ValueError as e:
                raise ValueError(f"--bq_dataset must look like PROJECT:DATASET or PROJECT.DATASET ({e})") from None
        if not self.output_dir and not self.bq_dataset:
            raise ValueError("give an output: --output_dir (files) and/or --bq_dataset (BigQuery)")
        if self.agent_events_file and self.agent_events_subscription:
            raise ValueError("give at most one agent-event input: --agent_events_file or --agent_events_subscription")
        if self.agent_events_subscription and not self.input_subscription:
            raise ValueError("--agent_events_subscription is for streaming runs; use --agent_events_file with "
                             "--input_file")
        if self.agent_events_subscription and not SUBSCRIPTION_PATH.match(self.agent_events_subscription):
            raise ValueError("--agent_events_subscription must look like projects/PROJECT/subscriptions/NAME")
        if self.manual_review_topic and not TOPIC_PATH.match(self.manual_review_topic):
            raise ValueError("--manual_review_topic must look like projects/PROJECT/topics/NAME")
        if self.assignment_sla_seconds <= 0 or self.reference_refresh_seconds <= 0:
            raise ValueError("--assignment_sla_seconds and --reference_refresh_seconds must be positive")
        if self.max_queue_seconds < 0 or (self.overflow_seconds is not None and self.overflow_seconds <= 0):
            raise ValueError("--max_queue_seconds must be 0 or more and --overflow_seconds positive")
        if self.max_missed_offers < 1:
            raise ValueError("--max_missed_offers must be at least 1")
        if not 0.0 <= self.unverified_source_reliability <= 1.0:
            raise ValueError("--unverified_source_reliability must be between 0 and 1")
        if self.routing == "on":
            from transforms.reference import ReferenceDataError, load_reference

            try:  # fail at submission, with the file and line, not in the workers
                load_reference(self.reference_data, self.source_registry)
            except ReferenceDataError as e:
                raise ValueError(f"reference data: {e}") from None
        if self.input_subscription:
            self.view_as(StandardOptions).streaming = True
            if self.output_dir:
                raise ValueError("--output_dir is for bounded runs; stream into --bq_dataset instead")
