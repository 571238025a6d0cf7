r"""The Leadflow graph without its I/O: the stages every input message goes through, in both modes.

    messages -> Parse -> Normalize -> Dedup -> Score -> Enrich -> Route -> {table: records} + deliveries
                                         \-> DailySourceCounts, RegisterSources, merges, guards
                                         \-> lead_versions <- Score, Route
    agent events ----------------------------------------------> Route

Each stage takes one config object, built here from the pipeline options (``StageConfigs.from_options``);
``LeadGraph.expand`` is the wiring. Absent inputs (no agent events) are absent keys of the input dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam

from pipelines.dataflow import is_dataflow
from pipelines.options import LOCAL_IDENTITY_STORE, LeadflowOptions
from transforms.assign import RouteAndAssign, RoutingConfig
from transforms.daily_counts import DailySourceCounts
from transforms.dedup import DeduplicatePersons
from transforms.enrich import EnrichLeads, ReferenceConfig, ReferenceSideInput, RegisterUnknownSources
from transforms.identity import IdentityConfig
from transforms.lead_record import assignment_versions, scored_version
from transforms.normalize import NormalizeLeads
from transforms.parse import ParseMessages, ParseStageConfig
from transforms.parsers.base import ParseLimits
from transforms.score import ScoreLeads, ScoringConfig


@dataclass(frozen=True)
class StageConfigs:
    """One config per stage; ``scoring`` None writes leads unscored, ``routing`` None leaves them unrouted."""

    parse: ParseStageConfig
    default_region: str
    dedup: IdentityConfig
    early_firing_seconds: float
    unverified_source_reliability: float
    scoring: ScoringConfig | None
    routing: RoutingConfig | None
    periodic_reference: bool  # the reference data as a refreshed side input (Dataflow streaming)
    reference_data: str | None = None  # where identity_blocklist.csv lives (None: bundled)

    @classmethod
    def from_options(cls, o: LeadflowOptions, streaming: bool, clock: Callable[[], float] | None = None
                     ) -> StageConfigs:
        scoring = None if o.scorer == "none" else ScoringConfig(
            o.scorer, url=o.scorer_url, model_tag=o.scorer_model, model_store=o.scorer_model_store,
            hot=o.hot_threshold, warm=o.warm_threshold, retries=o.scorer_retries, token_secret=o.scorer_token_secret)
        reference = ReferenceConfig(o.reference_data, o.source_registry,
                                    o.reference_refresh_seconds if streaming else 0.0, o.unverified_source_reliability)
        routing = RoutingConfig(reference, o.assignment_sla_seconds, streaming, clock, o.max_queue_seconds,
                                o.overflow_seconds, o.max_missed_offers) if o.routing == "on" else None
        return cls(
            parse=ParseStageConfig(o.max_payload_bytes, o.google_ads_key, o.source_registry, o.max_unit_seconds,
                                   parse_limits(o)),
            default_region=o.default_region,
            dedup=IdentityConfig(identity_store(o, streaming), o.identity_max_companions, o.identity_fan_in_days,
                                 o.dedup_ttl_days),
            early_firing_seconds=o.early_firing_seconds,
            unverified_source_reliability=o.unverified_source_reliability,
            scoring=scoring, routing=routing, periodic_reference=streaming and is_dataflow(o),
            reference_data=o.reference_data)


def parse_limits(o: LeadflowOptions) -> ParseLimits:
    """The parse limits the options set (one option per ``ParseLimits`` field, named as it)."""
    return ParseLimits(**{f.name: getattr(o, f.name) for f in dataclasses.fields(ParseLimits)})


def identity_store(o: LeadflowOptions, streaming: bool) -> str:
    """The identity store of a run: as given, else memory (bounded) or a local SQLite file (local streaming)."""
    on_dataflow = is_dataflow(o)
    if o.identity_store:
        if on_dataflow and streaming and not o.identity_store.startswith("bigtable:"):
            raise ValueError("streaming on Dataflow needs --identity_store=bigtable:projects/P/instances/I/tables/T "
                             "(memory and sqlite live in one worker)")
        return o.identity_store
    if streaming and on_dataflow:
        raise ValueError("streaming on Dataflow needs --identity_store=bigtable:projects/P/instances/I/tables/T")
    return f"sqlite:{LOCAL_IDENTITY_STORE}" if streaming else "memory"


class LeadGraph(beam.PTransform):
    """``{"messages": InputMessage, "agent_events": InputMessage (optional)}`` -> ``{table name: records}`` plus
    the ``deliveries`` and (with routing) ``manual_review`` streams. The one graph both modes share."""

    def __init__(self, config: StageConfigs):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        c = self.config
        parsed = inputs["messages"] | "Parse" >> ParseMessages(c.parse)
        normalized = parsed["units"] | "Normalize" >> NormalizeLeads(c.default_region, c.reference_data)
        deduped = normalized.leads | "Dedup" >> DeduplicatePersons(c.dedup)
        counts = deduped.events | "DailySourceCounts" >> DailySourceCounts(c.early_firing_seconds)
        registrations = deduped.events | "RegisterSources" >> RegisterUnknownSources(c.unverified_source_reliability)
        leads = deduped.leads | "Score" >> ScoreLeads(c.scoring) if c.scoring else deduped.leads
        out = {"lead_events": deduped.events, "lead_source_history": deduped.history,
               "source_daily_counts": counts, "source_registrations": registrations,
               "lead_merges": deduped.merges, "identifier_guards": deduped.guards}
        versions = [deduped.versions]
        dead_letters = [parsed["dead_letters"], normalized.dead_letters, deduped.dead_letters]
        if c.scoring:
            versions.append(leads | "ScoredVersions" >> beam.Map(scored_version))
        if c.routing is None:
            out.update(leads=leads, deliveries=leads)
        else:
            routed = self.route(leads, inputs.get("agent_events"), (deduped.events, deduped.merges))
            out.update(leads=routed["lead"], deliveries=routed["delivery"], manual_review=routed["manual_review"],
                       lead_assignments=routed["assignment"], agent_status=routed["agent_status"])
            dead_letters.append(routed["dead_letters"])
            versions.append(routed["assignment"] | "RoutingVersions" >> beam.FlatMap(assignment_versions))
        out["lead_versions"] = versions | "AllVersions" >> beam.Flatten()
        out["dead_letters"] = dead_letters | "AllDeadLetters" >> beam.Flatten()
        return out

    def route(self, leads, agent_events, person_events):
        """Enrich and Route share the reference data: one side input (bounded runs, Dataflow) or, in local
        streaming, each worker's cache (the DirectRunner's streaming mode cannot run PeriodicImpulse)."""
        c = self.config.routing
        reference = {}
        if not c.streaming or self.config.periodic_reference:
            reference["reference"] = leads.pipeline | "Reference" >> ReferenceSideInput(
                c.reference, periodic=self.config.periodic_reference)
        enriched = {"leads": leads, **reference} | "Enrich" >> EnrichLeads(c.reference)
        events = {}
        if agent_events is not None:  # later events of a person go to the agent who accepted it (owner first)
            events = {"agent_events": agent_events, "person_events": person_events | "PersonEvents" >> beam.Flatten()}
        return {"leads": enriched, **events, **reference} | "Route" >> RouteAndAssign(c)
