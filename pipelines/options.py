"""Pipeline options: every setting of the lead pipeline, as a PipelineOptions subclass."""

from __future__ import annotations

import os

import phonenumbers
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.parse import DEFAULT_MAX_PAYLOAD_BYTES


class LeadflowOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        g = parser.add_argument_group("Leadflow input/output")
        g.add_argument("--input_file", help="Bounded mode: JSONL file (glob allowed) of messages.")
        g.add_argument("--output_dir", help="Bounded mode: directory for <table>.jsonl outputs.")
        g = parser.add_argument_group("Leadflow processing")
        g.add_argument("--default_region", default="US",
                       help="Region for phone numbers without a country code or a payload country (default US).")
        g.add_argument("--max_payload_bytes", type=int, default=DEFAULT_MAX_PAYLOAD_BYTES,
                       help="Larger payloads are dead-lettered (default 1 MB).")
        g.add_argument("--dedup_hold_seconds", type=float, default=60.0,
                       help="How long events wait (event time) so out-of-order arrivals decide the primary source.")
        g.add_argument("--dedup_ttl_days", type=float, default=90.0,
                       help="Days after a person's newest event when their dedup state expires (default 90).")
        g.add_argument("--early_firing_seconds", type=int, default=60,
                       help="Streaming: how often daily source counts emit updated early panes.")
        g.add_argument("--source_registry", default=None,
                       help="Source registry CSV (default: the bundled transforms/reference_data/sources.csv).")
        g.add_argument("--google_ads_key", default=os.environ.get("LEADFLOW_GOOGLE_ADS_KEY"),
                       help="Expected google_key of Google Ads lead forms (default: $LEADFLOW_GOOGLE_ADS_KEY). "
                            "When set, leads with another key are dead-lettered.")

    def validate_leadflow(self) -> None:
        """Clear errors for option combinations that cannot run."""
        if self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"--default_region={self.default_region!r} is not a region phonenumbers knows "
                             "(use an ISO 3166-1 alpha-2 code such as US, GB, IN)")
        if self.max_payload_bytes <= 0:
            raise ValueError("--max_payload_bytes must be positive")
        if self.dedup_ttl_days <= 0 or self.dedup_hold_seconds < 0:
            raise ValueError("--dedup_ttl_days must be positive and --dedup_hold_seconds not negative")
        if not self.input_file:
            raise ValueError("--input_file is required (bounded mode)")
        if not self.output_dir:
            raise ValueError("--output_dir is required with --input_file")
