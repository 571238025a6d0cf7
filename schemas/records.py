"""The one definition of every record Leadflow writes or accepts.

Each record is a dataclass whose fields carry their documentation. BigQuery table schemas,
Arrow schemas and JSON Schemas are derived from these classes by ``schemas.derive``; nothing
else in the project spells out a column list.

Types map as follows: ``str`` -> STRING, ``int`` -> INTEGER, ``float`` -> FLOAT,
``bool`` -> BOOLEAN, ``datetime`` -> TIMESTAMP (always UTC), ``date`` -> DATE,
``list[str]`` -> REPEATED STRING. ``Optional[...]`` (``X | None``) fields are NULLABLE,
the rest REQUIRED. ``Json`` is a STRING column holding a JSON document.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NewType

Json = NewType("Json", str)


def doc(description: str, **extra: Any) -> Any:
    """A dataclass field carrying its column description (and optional JSON Schema limits)."""
    default = extra.pop("default", dataclasses.MISSING)
    default_factory = extra.pop("default_factory", dataclasses.MISSING)
    kwargs: dict[str, Any] = {"metadata": {"description": description, **extra}}
    if extra.get("pii"):  # personal data: kept out of repr(), so logs and tracebacks never show it
        kwargs["repr"] = False
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    if default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = default_factory
    return field(**kwargs)


@dataclass(frozen=True)
class TableSpec:
    """How a record is stored in BigQuery: table name, partitioning, clustering, and the row key.

    ``row_key``: the columns whose values identify a row, so a retried insert carries the same ``insertId``
    (joined with ``:``; with ``row_key_hashed``, the SHA-256 of the values joined with ``|``).
    """

    name: str
    record: type
    partition_field: str
    cluster_fields: tuple[str, ...]
    description: str
    row_key: tuple[str, ...]
    row_key_hashed: bool = False
    written_by_pipeline: bool = True  # False: loaded by others (CRM outcomes), the pipeline only reads it
    retention: str | None = None  # the RETENTION_DAYS policy its partitions expire by (None: kept until erased)


# How long partitions are kept, per policy, in days (None: kept). The defaults; Terraform's var.retention_days and
# `leadflow local up --retention POLICY=DAYS` override them (docs/runbook.md, "Retention").
RETENTION_DAYS: dict[str, float | None] = {
    "dead_letters": 30,  # payloads are kept for replay after a fix, not for ever
    "events": 730,  # lead events, routing steps, agent status: two years of training data and reports
    "history": None,  # the lead record (versions, merges, source history): as long as the lead, until erased
}


# --------------------------------------------------------------------------------------
# Output records (BigQuery tables, file-mode JSONL files)
# --------------------------------------------------------------------------------------


@dataclass
class Lead:
    """A person's first sighting (outcome ``new``), written once; the living record is ``leads_current``."""

    lead_id: str = doc("Deterministic id of the lead (uuid5 of identity key and first event).")
    identity_key: str = doc("The identifier of the first sighting: 'phone:<E.164>' or 'email:<address>' (the "
                            "person is known by every identifier seen with them, see lead_merges).", pii=True)
    phone_e164: str | None = doc("Valid phone number in E.164, or null.", pii=True)
    email: str | None = doc("Normalized (lower-cased, syntax-checked) e-mail, or null.", pii=True)
    full_name: str | None = doc("Trimmed full name, or null.", pii=True)
    first_name: str | None = doc("First name, when known.", pii=True)
    last_name: str | None = doc("Last name, when known.", pii=True)
    country: str | None = doc("ISO 3166-1 alpha-2 country code, when known.")
    postal_code: str | None = doc("Postal code as given (upper-cased, trimmed).", pii=True)
    city: str | None = doc("City, when known.")
    state: str | None = doc("State or region, when known.")
    property_address: str | None = doc("Property address from provider e-mails, when known.", pii=True)
    message: str | None = doc("The lead's message or inquiry text.", pii=True)
    primary_source: str = doc("source_id of the first source (earliest event time) to send this person.")
    primary_provider: str = doc("Provider of the primary source.")
    first_seen_at: datetime = doc("Event time of the first sighting (UTC).")
    is_test: bool = doc("True for provider test leads (e.g. Google Ads is_test).")
    processed_at: datetime = doc("When the pipeline wrote this row (UTC).")
    score: float | None = doc("Conversion score 0-1 at first sighting; null when the run has no scorer.",
                              default=None)
    score_source: str | None = doc("'model' (LightGBM) or 'fallback' (rule-based, the scorer failed).",
                                   default=None)
    model_version: str | None = doc("Model tag that scored the lead (null for fallback scores).", default=None)
    priority_tier: str | None = doc("hot | warm | cold, from the score and the configured thresholds.",
                                    default=None)
    # Enrichment (side inputs: source registry, postal geography, phone metadata, e-mail domains)
    source_verified: bool | None = doc("False when the primary source was registered automatically (unknown).",
                                       default=None)
    source_reliability: float | None = doc("Reliability weight 0-1 of the primary source.", default=None)
    geo_city: str | None = doc("City of the US ZIP code (zipcodes), when the postal code is a known ZIP.",
                               default=None)
    geo_state: str | None = doc("State of the US ZIP code, when known.", default=None)
    latitude: float | None = doc("Latitude of the ZIP code centre.", default=None)
    longitude: float | None = doc("Longitude of the ZIP code centre.", default=None)
    phone_type: str | None = doc("mobile | fixed_line | fixed_line_or_mobile | voip | toll_free | ... "
                                 "(phonenumbers).", default=None)
    phone_carrier: str | None = doc("Original carrier of a mobile number, when phonenumbers knows it.",
                                    default=None)
    phone_region: str | None = doc("Geographic description of the number (phonenumbers geocoder).", default=None)
    phone_timezones: list[str] = doc("IANA time zones of the number.", default_factory=list)
    email_domain_class: str | None = doc("free | corporate | disposable, for the lead's e-mail domain.",
                                         default=None)
    # Routing
    territory: str | None = doc("Territory the lead was routed to (null: none matched).", default=None)
    territory_match: str | None = doc("What matched the territory: postal_code | state | phone_region | country.",
                                      default=None)
    team: str | None = doc("Team by territory and priority tier.", default=None)
    agent_id: str | None = doc("Agent first assigned (see lead_assignments for re-assignments).", default=None)
    routing_status: str | None = doc("assigned | queued | manual_review (null when the run does not route).",
                                     default=None)
    routing_reason: str | None = doc("Why the lead went to manual review (no_territory, no_team, "
                                     "no_available_agent).", default=None)
    routed_at: datetime | None = doc("When the lead was routed (UTC).", default=None)


@dataclass
class LeadEvent:
    """One input message (or one CSV row) that became part of a lead: exactly one per unit."""

    event_id: str = doc("Deterministic id of this event (uuid5 of message id and unit index).")
    message_id: str = doc("Pub/Sub message id (or input line id); CSV rows append '#<row>'.")
    lead_id: str = doc("The lead this event belongs to.")
    outcome: str = doc("new | duplicate_same_source | cross_source | replay.")
    provider: str = doc("Provider format the message was parsed as.")
    source_id: str = doc("Source registry id the message came from.")
    source_verified: bool = doc("False when the source was not in the registry.")
    external_id: str | None = doc("The provider's own id for the lead, when it has one.")
    identity_key: str = doc("'phone:<E.164>' or 'email:<address>'.", pii=True)
    event_time: datetime = doc("When the lead happened according to the provider (UTC).")
    publish_time: datetime = doc("When the message reached Leadflow (Pub/Sub publish time, UTC).")
    phone_e164: str | None = doc("Valid phone in E.164 carried by this event.", pii=True)
    email: str | None = doc("Normalized e-mail carried by this event.", pii=True)
    full_name: str | None = doc("Name carried by this event.", pii=True)
    is_test: bool = doc("True for provider test leads.")
    campaign_id: str | None = doc("Ad campaign id, when the provider sends one.")
    form_id: str | None = doc("Lead form id, when the provider sends one.")
    processed_at: datetime = doc("When the pipeline wrote this row (UTC).")


@dataclass
class SourceHistory:
    """Which sources sent a person: one row per (lead, source) at its first sighting."""

    lead_id: str = doc("The lead.")
    source_id: str = doc("The source that sent the person.")
    provider: str = doc("Provider format of that source.")
    external_id: str | None = doc("The provider's id for the lead.")
    is_primary: bool = doc("True for the source that sent the person first (earliest event time).")
    event_id: str = doc("The lead event that introduced this source.")
    received_at: datetime = doc("Event time of that first message from this source (UTC).")


@dataclass
class DeadLetter:
    """An input that could not become a lead event, with the reason and the original payload."""

    message_id: str = doc("Pub/Sub message id (or input line id); CSV rows append '#<row>'.")
    provider: str | None = doc("Provider attribute or detected provider, when known.")
    stage: str = doc("Pipeline stage that rejected the input: decode, parse, normalize, sink, ...")
    error_type: str = doc("Machine-readable reason, e.g. invalid_json, missing_contact.")
    error_message: str = doc("Readable explanation (never contains PII).")
    payload: str | None = doc("The original payload: text, or base64 when payload_encoding says so.", pii=True)
    payload_encoding: str = doc("'utf-8' or 'base64' (data that is not valid UTF-8).")
    payload_bytes: int = doc("Size of the original payload in bytes.")
    payload_truncated: bool = doc("True when payload holds only the first bytes of an oversize input.")
    payload_sha256: str = doc("SHA-256 of the full original payload.")
    attributes: Json = doc("Message attributes as a JSON object.")
    publish_time: datetime | None = doc("Pub/Sub publish time of the message (UTC).")
    failed_at: datetime = doc("When the pipeline rejected it (UTC).")


@dataclass
class SourceDailyCounts:
    """Per source and UTC day: events, new leads, cross-source, duplicates and replays."""

    source_id: str = doc("Source registry id.")
    event_date: date = doc("UTC day of the message event timestamp.")
    events: int = doc("All lead events from this source that day.")
    new_leads: int = doc("Events that created a lead.")
    cross_source: int = doc("Events for a person another source sent first.")
    duplicates: int = doc("Events repeating a person this source already sent.")
    replays: int = doc("Redeliveries or repeated provider ids (no new facts).")
    is_final: bool = doc("True for the on-time pane of the day; early panes are superseded.")
    pane_index: int = doc("Pane number of this window firing; the highest is the current figure.")
    computed_at: datetime = doc("When the row was computed (UTC).")


@dataclass
class Assignment:
    """One step in a lead's assignment history: assigned, accepted, rejected, expired, reassigned, ..."""

    assignment_event_id: str = doc("Deterministic id of this step (uuid5 of lead, action, attempt, agent).")
    lead_id: str = doc("The lead (for action 'ignored': the lead id the agent event named).")
    action: str = doc("assigned | accepted | rejected | expired | reassigned | manual_review | ignored | queued | "
                      "dequeued | overflowed | closed.")
    attempt: int = doc("1 for the first assignment, +1 for each re-assignment.")
    team: str | None = doc("Team the lead was routed to.")
    territory: str | None = doc("Territory of the lead.")
    agent_id: str | None = doc("Agent this step concerns (null for manual review without an agent).")
    reason: str | None = doc("Why: no_territory, no_team, no_available_agent, no_agents_in_team, "
                             "all_agents_offered, off_shift, queue_timeout, agent_free, overflow_to:<team>, "
                             "sla_expired, agent_rejected, unknown_lead, not_pending, ...")
    priority_tier: str | None = doc("hot | warm | cold at routing time.")
    lead_event_time: datetime | None = doc("Event time of the lead's first sighting (speed to lead starts here).")
    action_at: datetime = doc("When this step happened (UTC): assignment, the agent's event, or SLA expiry.")
    sla_deadline: datetime | None = doc("For assigned/reassigned: when the assignment expires unless accepted.")
    agent_event_id: str | None = doc("The agent event that caused this step, when one did.")
    processed_at: datetime = doc("When the pipeline wrote this row (UTC).")
    decision: Json | None = doc(
        "The audit of this step. Offers (assigned, reassigned) and waits (queued, manual_review): {candidates: free "
        "agents considered, chosen, skipped: [{agent_id, reason: unavailable | away | offline | already_offered | "
        "off_shift | at_cap}]; offers also open_before / max_open of the chosen agent}; dequeued: {waited_seconds}; "
        "overflowed: {from, to, waited_seconds}.", default=None)


@dataclass
class AgentStatus:
    """An agent's availability changing: from an agent event, or set away after a missed SLA."""

    agent_id: str = doc("The agent.")
    team: str = doc("Team whose dispatcher applied the change.")
    status: str = doc("online | away | offline.")
    reason: str = doc("agent_event | missed_offers (let --max_missed_offers offers expire in a row).")
    agent_event_id: str | None = doc("The agent event, when one caused it.")
    changed_at: datetime = doc("When the status changed (UTC).")
    processed_at: datetime = doc("When the pipeline wrote this row (UTC).")


@dataclass
class SourceRegistration:
    """A source seen for the first time that the registry does not know: registered as unverified."""

    source_id: str = doc("The derived source id, e.g. 'email:<sender domain>'.")
    provider: str = doc("Provider format the messages came in.")
    display_name: str = doc("Readable name derived from the source id.")
    verified: bool = doc("Always false: a person has to verify the source in the registry.")
    reliability: float = doc("Default reliability weight given to unverified sources.")
    first_message_id: str = doc("Message that introduced the source.")
    first_seen_at: datetime = doc("Event time of that message (UTC).")
    registered_at: datetime = doc("When the pipeline registered it (UTC).")


@dataclass
class LeadMerge:
    """Two persons found to be one: ``merged_lead_id`` now counts under ``into_lead_id``.

    A lead merged into one that is merged later is re-pointed (a newer row for the same ``merged_lead_id``):
    the latest row per merged lead names its survivor, so no chain has to be followed.
    """

    merged_lead_id: str = doc("The absorbed lead (no longer live).")
    into_lead_id: str = doc("The surviving lead (the older one: earlier first sighting).")
    merged_at: datetime = doc("Event time of the event that linked them (UTC).")
    event_id: str = doc("The lead event that linked the two persons.")
    linked_by: str = doc("Kind of identifier that linked them: phone | email (never its value).")
    processed_at: datetime = doc("When the pipeline wrote this row (UTC).")


@dataclass
class LeadVersion:
    """One change to a lead: the living lead record is the latest value of each column (``leads_current``)."""

    version_id: str = doc("Deterministic id of this change (uuid5 of lead, change and cause).")
    lead_id: str = doc("The lead that changed.")
    change: str = doc("created | new_source | merged | merged_into | primary_corrected | scored | assigned | "
                      "accepted | rejected | expired | reassigned | manual_review.")
    changed_at: datetime = doc("When the change happened (UTC): the event time, or the routing step's time.")
    event_id: str | None = doc("The lead event that caused the change, when one did.")
    status: str | None = doc("Lead status after the change: new | scored | assigned | accepted | "
                             "manual_review | merged (null: unchanged).")
    source_id: str | None = doc("For new_source: the source added.", default=None)
    primary_source: str | None = doc("For created and primary_corrected: the primary source.", default=None)
    primary_provider: str | None = doc("Provider of that primary source.", default=None)
    first_seen_at: datetime | None = doc("For created and primary_corrected: event time of the earliest event.",
                                         default=None)
    merged_lead_id: str | None = doc("For merged: the lead absorbed into this one.", default=None)
    merged_into: str | None = doc("For merged_into: the surviving lead.", default=None)
    score: float | None = doc("For scored: the score 0-1.", default=None)
    score_source: str | None = doc("For scored: model | fallback.", default=None)
    priority_tier: str | None = doc("For scored: hot | warm | cold.", default=None)
    team: str | None = doc("For routing changes: the team.", default=None)
    agent_id: str | None = doc("For routing changes: the agent concerned.", default=None)
    attempt: int | None = doc("For routing changes: the assignment attempt (1 = first).", default=None)
    reason: str | None = doc("Why, for manual review, expiry, rejection and re-assignment.", default=None)
    processed_at: datetime | None = doc("When the pipeline wrote this row (UTC).", default=None)


@dataclass
class LeadCurrent:
    """The living lead record: one row per lead as it stands now (the ``leads_current`` view; bounded runs write
    ``leads_current.jsonl``). A merged-away lead has status ``merged`` and names its survivor."""

    lead_id: str = doc("The lead.")
    status: str = doc("new | scored | assigned | accepted | manual_review | merged.")
    merged_into: str | None = doc("For a merged-away lead: the surviving lead.")
    merged_lead_ids: list[str] = doc("Leads merged into this one.")
    agent_id: str | None = doc("Agent the lead is assigned to or accepted by (null: none).")
    team: str | None = doc("Team of the latest routing step.")
    attempts: int = doc("Assignment attempts so far (1 = first offer).")
    primary_source: str = doc("Source of the person's earliest event (corrected by late arrivals).")
    primary_provider: str = doc("Provider of that source.")
    sources: list[str] = doc("Every source that sent the person (absorbed leads included).")
    source_count: int = doc("How many sources.")
    events: int = doc("Lead events of the person (absorbed leads included).")
    score: float | None = doc("Latest score 0-1.")
    priority_tier: str | None = doc("hot | warm | cold, from the latest score.")
    score_source: str | None = doc("model | fallback.")
    first_seen_at: datetime = doc("Event time of the person's earliest event (UTC).")
    last_seen_at: datetime = doc("Event time of the person's latest event (UTC).")
    phone_e164: str | None = doc("Phone of the first sighting.", pii=True)
    email: str | None = doc("E-mail of the first sighting.", pii=True)
    full_name: str | None = doc("Name of the first sighting.", pii=True)
    is_test: bool = doc("True for provider test leads.")
    updated_at: datetime = doc("Time of the latest change or event (UTC).")

@dataclass
class IdentifierGuard:
    """An identifier that stopped linking people: seen with too many distinct people (a switchboard, a
    call-centre number, a shared family address). Holds a keyed hash, never the identifier."""

    identifier_hash: str = doc("Keyed hash (HMAC-SHA256) of the identifier.")
    kind: str = doc("phone | email.")
    decision: str = doc("shared: no longer links people.")
    companions: int = doc("Distinct other identifiers seen with it within the window when it tripped.")
    window_days: float = doc("The fan-in window.")
    decided_at: datetime = doc("Event time of the event that tripped the guard (UTC).")
    event_id: str = doc("That event.")
    processed_at: datetime = doc("When the pipeline wrote this row (UTC).")


@dataclass
class Erasure:
    """One erasure request (``leadflow forget``): who asked, when, and how many rows went. No personal data."""

    erasure_id: str = doc("Random id of the request.")
    requested_by: str = doc("Who asked: an operator or ticket id (never the person's identifier).")
    requested_at: datetime = doc("When the command ran (UTC); tombstones carry this time.")
    identifier_kind: str = doc("What the request named the person by: phone | email | lead_id.")
    subject_hash: str = doc("Keyed hash (HMAC-SHA256, the identity hash key) of that identifier.")
    leads: int = doc("Lead ids of the person (absorbed leads included).")
    rows_deleted: int = doc("Table rows deleted in all (counted, not deleted, in a dry run).")
    rows_by_table: Json = doc("Rows deleted per table, as a JSON object.")
    store_rows_deleted: int = doc("Identity store rows deleted (persons, identifiers).")
    tombstones: int = doc("Tombstones written (identifiers, payload fingerprints, provider ids, message ids).")
    pending_tables: list[str] = doc("Tables whose rows were still in the streaming buffer: run it again later.")
    dry_run: bool = doc("True when nothing was changed.")
    finished_at: datetime = doc("When the command finished (UTC).")


# --------------------------------------------------------------------------------------
# Accepted payloads
# --------------------------------------------------------------------------------------


@dataclass
class ApiLeadPayload:
    """The JSON body of Leadflow's own lead API (provider ``api``).

    At least one of ``phone`` and ``email`` is required; the rest is optional. Unknown keys are
    rejected so that typos surface as errors instead of silently lost data.
    """

    external_id: str = doc("Caller's id for the lead; repeated ids are replays.", minLength=1, maxLength=200)
    full_name: str | None = doc("Full name.", maxLength=300, default=None)
    first_name: str | None = doc("First name.", maxLength=150, default=None)
    last_name: str | None = doc("Last name.", maxLength=150, default=None)
    phone: str | None = doc("Phone number in any common format; E.164 preferred.", maxLength=40, default=None)
    email: str | None = doc("E-mail address.", maxLength=320, default=None)
    country: str | None = doc("ISO 3166-1 alpha-2 country code.", pattern="^[A-Za-z]{2}$", default=None)
    postal_code: str | None = doc("Postal code.", maxLength=20, default=None)
    city: str | None = doc("City.", maxLength=200, default=None)
    state: str | None = doc("State or region.", maxLength=200, default=None)
    message: str | None = doc("Free-text inquiry.", maxLength=10000, default=None)
    property_address: str | None = doc("Address of the property asked about.", maxLength=500, default=None)
    created_at: str | None = doc("RFC 3339 time the lead was captured.", format="date-time", default=None)
    source: str | None = doc("Caller's source label (e.g. landing page).", maxLength=200, default=None)
    is_test: bool | None = doc("Marks a test lead.", default=None)


@dataclass
class AgentEventPayload:
    """An agent's action or status change (JSON), from the agent-events subscription or file.

    ``accepted``, ``rejected`` and ``closed`` (worked: frees capacity) name the lead; ``online``, ``away`` and
    ``offline`` change the agent's
    availability for new assignments.
    """

    event_id: str = doc("Unique id of the event (repeats are ignored).", minLength=1, maxLength=200)
    agent_id: str = doc("Agent id from the agents reference table.", minLength=1, maxLength=200)
    type: str = doc("accepted | rejected | closed | online | away | offline.",
                    enum=["accepted", "rejected", "closed", "online", "away", "offline"])
    at: str = doc("RFC 3339 time of the event.", format="date-time")
    lead_id: str | None = doc("The lead, for accepted, rejected and closed.", maxLength=200, default=None)


@dataclass
class LeadOutcome:
    """What became of a lead, reported by a CRM or by sales (not written by the pipeline): conversion labels."""

    lead_id: str = doc("The lead (leads.lead_id).")
    converted: bool = doc("True when the lead converted (became a customer).")
    outcome_at: datetime = doc("When the outcome happened (UTC); the latest report per lead counts.")
    value: float | None = doc("Deal value in the account currency, when known.")
    reported_by: str = doc("Who reported the outcome: CRM name, user or import job.")


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("leads", Lead, "first_seen_at", ("primary_source",), "One row per person (lead).",
                  row_key=("lead_id",)),
        TableSpec("lead_events", LeadEvent, "event_time", ("source_id", "outcome"),
                  "One row per accepted input unit.", row_key=("event_id",), retention="events"),
        TableSpec("lead_source_history", SourceHistory, "received_at", ("lead_id",),
                  "Sources that sent each person.", row_key=("lead_id", "source_id"), retention="history"),
        # failed_at is left out of the key: a retried bundle rebuilds the same dead letter with a new failed_at.
        TableSpec("dead_letters", DeadLetter, "failed_at", ("stage", "error_type"), "Rejected inputs.",
                  row_key=("message_id", "stage", "error_type", "payload_sha256"), row_key_hashed=True,
                  retention="dead_letters"),
        TableSpec("source_daily_counts", SourceDailyCounts, "event_date", ("source_id",),
                  "Daily counts per source.", row_key=("source_id", "event_date", "pane_index")),
        TableSpec("lead_assignments", Assignment, "action_at", ("team", "action"),
                  "Assignment history: who got each lead, accepted, expired, re-assigned.",
                  row_key=("assignment_event_id",), retention="events"),
        TableSpec("agent_status", AgentStatus, "changed_at", ("team", "agent_id"), "Agent availability changes.",
                  row_key=("agent_id", "status", "changed_at", "agent_event_id"), retention="events"),
        TableSpec("source_registrations", SourceRegistration, "registered_at", ("provider",),
                  "Unknown sources registered automatically as unverified.", row_key=("source_id",)),
        TableSpec("lead_merges", LeadMerge, "merged_at", ("into_lead_id",),
                  "Persons found to be one: the absorbed lead and its survivor.",
                  row_key=("merged_lead_id", "event_id"), retention="history"),
        TableSpec("lead_versions", LeadVersion, "changed_at", ("lead_id", "change"),
                  "Every change to a lead; leads_current is the latest state.", row_key=("version_id",),
                  retention="history"),
        TableSpec("identifier_guards", IdentifierGuard, "decided_at", ("kind",),
                  "Identifiers that stopped linking people (fan-in guard).", row_key=("identifier_hash",)),
        TableSpec("lead_outcomes", LeadOutcome, "outcome_at", ("lead_id",),
                  "Reported lead outcomes (conversions), for source reliability and retraining.",
                  row_key=("lead_id", "outcome_at"), written_by_pipeline=False),
        TableSpec("erasures", Erasure, "requested_at", ("identifier_kind",),
                  "Erasure requests (leadflow forget): the audit trail, without personal data.",
                  row_key=("erasure_id",), written_by_pipeline=False),
    )
}
