"""The known world of the view tests: a small world written out by hand, with answers worked out from it.

Eight people (one a test lead) from five sources over two days, with duplicates, replays, a duplicated streaming
insert, re-assignments, an expired assignment, dead letters redelivered, and outcomes reported twice. The expected
numbers in tests/e2e/test_views.py and tests/notebooks/test_notebooks.py are worked out by hand from these rows, so
a change here changes those numbers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemas.derive import to_row
from schemas.records import Assignment, DeadLetter, Lead, LeadEvent, LeadOutcome, SourceHistory
from tests.helpers.bigquery import insert, new_dataset

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)
T1 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # day 1, 10:00 UTC
T2 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # day 2, 10:00 UTC
META, GOOGLE, ZILLOW, REALTOR = "meta_lead_ads", "google_ads_lead_form", "zillow", "realtor_com"
GLOBEX = "email:globex.io"  # an unknown sender domain, registered as an unverified source
PROVIDER = {META: META, GOOGLE: GOOGLE, ZILLOW: "inbound_email", REALTOR: "inbound_email", GLOBEX: "inbound_email"}
RELIABILITY = {META: 0.9, GOOGLE: 0.85, ZILLOW: 0.8, REALTOR: 0.7, GLOBEX: 0.3}


def at(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)


# (message, person, source, outcome, event time[, publish time]). Person T is a provider test lead.
EVENTS = [
    ("m01", "A", META, "new", at(T1, 0)),
    ("m02", "A", GOOGLE, "cross_source", at(T1, 60)),
    ("m03", "A", META, "duplicate_same_source", at(T1, 120)),
    ("m04", "B", ZILLOW, "new", at(T1, 30)),
    ("m05", "B", META, "cross_source", at(T1, 300)),
    ("m06", "C", META, "new", at(T1, 400)),
    ("m07", "A", META, "replay", at(T1, 500)),
    ("m08", "T", GOOGLE, "new", at(T1, 600)),
    ("m09", "G", META, "new", at(T1, 700)),
    ("m10", "C", ZILLOW, "cross_source", at(T2, 10)),
    ("m11", "D", GOOGLE, "new", at(T2, 20)),
    ("m12", "D", GOOGLE, "replay", at(T1, -3600), at(T2, 25)),  # resent on day 2 with its old provider time
    ("m13", "A", ZILLOW, "cross_source", at(T2, 40)),
    ("m14", "E", META, "new", at(T2, 50)),
    ("m15", "F", GLOBEX, "new", at(T2, 60)),
    ("m16", "H", REALTOR, "new", at(T2, 70)),
]
# person -> (score, score_source, priority_tier); E was never scored.
SCORES = {
    "A": (0.82, "model", "hot"), "B": (0.45, "model", "warm"), "C": (0.30, "fallback", "warm"),
    "T": (0.90, "model", "hot"), "G": (0.88, "model", "hot"), "D": (0.15, "model", "cold"),
    "E": (None, None, None), "F": (1.0, "model", "hot"), "H": (0.55, "model", "warm"),
}


def lead_id(person: str) -> str:
    return f"lead-{person}"


def known_rows() -> dict[str, list]:
    """Rows for every table the views read, as the pipeline (and the CRM, for outcomes) would write them."""
    processed = at(T2, 3600)
    events, leads, history = [], [], []
    seen: dict[str, set[str]] = {}
    for message, person, source, outcome, t, *published in EVENTS:
        phone = f"+1415555{ord(person):04d}"
        events.append(LeadEvent(
            event_id=f"ev-{message}", message_id=message, lead_id=lead_id(person), outcome=outcome,
            provider=PROVIDER[source], source_id=source, source_verified=source != GLOBEX, external_id=None,
            identity_key=f"phone:{phone}", event_time=t, publish_time=(published or [t])[0], phone_e164=phone,
            email=None,
            full_name=None, is_test=person == "T", campaign_id=None, form_id=None, processed_at=processed))
        if outcome == "new":
            score, score_source, tier = SCORES[person]
            leads.append(Lead(
                lead_id=lead_id(person), identity_key=f"phone:{phone}", phone_e164=phone, email=None,
                full_name=None, first_name=None, last_name=None, country="US", postal_code=None, city=None,
                state=None, property_address=None, message=None, primary_source=source,
                primary_provider=PROVIDER[source], first_seen_at=t, is_test=person == "T", processed_at=processed,
                score=score, score_source=score_source, model_version="lead_scorer:v1" if score_source == "model"
                else None, priority_tier=tier, source_verified=source != GLOBEX,
                source_reliability=RELIABILITY[source]))
        if outcome in ("new", "cross_source") and source not in seen.setdefault(person, set()):
            seen[person].add(source)
            history.append(SourceHistory(
                lead_id=lead_id(person), source_id=source, provider=PROVIDER[source], external_id=None,
                is_primary=outcome == "new", event_id=f"ev-{message}", received_at=t))
    history.append(history[0])  # a streaming insert delivered twice: (A, meta) appears two times

    def step(n, person, action, attempt, team, seconds, agent="agent-1", base=None):
        first = next(e[4] for e in EVENTS if e[1] == person and e[3] == "new") if person in SCORES else None
        return Assignment(
            assignment_event_id=f"as-{n}", lead_id=lead_id(person), action=action, attempt=attempt, team=team,
            territory="us-west" if team == "west" else "us-east", agent_id=agent, reason=None,
            priority_tier="warm", lead_event_time=first, action_at=at(base or first, seconds),
            sla_deadline=None, agent_event_id=None, processed_at=processed)

    assignments = [
        # A (west, day 1): assigned after 30 s, expired, re-assigned, accepted 400 s after its event.
        step(1, "A", "assigned", 1, "west", 30, "agent-1"),
        step(2, "A", "expired", 1, "west", 330, "agent-1"),
        step(2, "A", "expired", 1, "west", 330, "agent-1"),  # a streaming insert delivered twice
        step(3, "A", "reassigned", 2, "west", 330, "agent-2"),
        step(4, "A", "accepted", 2, "west", 400, "agent-2"),
        # B (west, day 1): assigned after 60 s, accepted after 180 s.
        step(5, "B", "assigned", 1, "west", 60), step(6, "B", "accepted", 1, "west", 180),
        # C (west, day 1): assigned after 90 s, rejected, re-assigned, never accepted.
        step(7, "C", "assigned", 1, "west", 90, "agent-1"), step(8, "C", "rejected", 1, "west", 150, "agent-1"),
        step(9, "C", "reassigned", 2, "west", 150, "agent-3"),
        # G (west, day 1): assigned after 10 s, accepted after 70 s.
        step(10, "G", "assigned", 1, "west", 10), step(11, "G", "accepted", 1, "west", 70),
        # D (east, day 2): 20 s, 200 s. F (east, day 2): 40 s, 100 s; its assignment row was inserted twice.
        step(12, "D", "assigned", 1, "east", 20), step(13, "D", "accepted", 1, "east", 200),
        step(14, "F", "assigned", 1, "east", 40), step(14, "F", "assigned", 1, "east", 40),
        step(15, "F", "accepted", 1, "east", 100),
        # H (west, day 2, a second team that day): assigned after 15.25 s, accepted after 45.6 s (fractions count).
        step(18, "H", "assigned", 1, "west", 15.25), step(19, "H", "accepted", 1, "west", 45.6),
        # E went to manual review (no team); an agent accepted an unknown lead (ignored): neither counts.
        step(16, "E", "manual_review", 0, None, 5, None),
        step(17, "X", "ignored", 0, None, 0, "agent-9", base=T2),
    ]

    def dead(message, stage, error_type, provider, sha, size, failed, truncated=False):
        return DeadLetter(
            message_id=message, provider=provider, stage=stage, error_type=error_type, error_message="x",
            payload="x", payload_encoding="utf-8", payload_bytes=size, payload_truncated=truncated,
            payload_sha256=sha, attributes="{}", publish_time=failed, failed_at=failed)

    dead_letters = [
        dead("m90", "parse", "invalid_json", META, "s1", 10, at(T1, 1)),
        dead("m90", "parse", "invalid_json", META, "s1", 10, at(T1, 61)),  # the same message redelivered
        dead("m91", "parse", "invalid_json", META, "s2", 12, at(T1, 120)),
        dead("m92", "decode", "invalid_utf8", None, "s3", 5000, at(T1, 130), truncated=True),
        dead("m93", "normalize", "missing_contact", GOOGLE, "s4", 100, at(T2, 5)),
        dead("m94", "parse", "invalid_json", META, "s5", 7, at(T2, 6)),
    ]

    def outcome(person, converted, days, value=None, by="crm"):
        return LeadOutcome(lead_id=lead_id(person), converted=converted, outcome_at=at(T2, days * 86400),
                           value=value, reported_by=by)

    outcomes = [
        outcome("A", False, 1), outcome("A", True, 3, 5000.0),  # lost, then won: the latest counts
        outcome("B", False, 2), outcome("D", True, 2), outcome("G", True, 4, 1200.0), outcome("F", False, 5),
        outcome("T", True, 1, 99.0),  # a test lead: excluded
        outcome("X", True, 1, 10.0),  # an unknown lead: no source sent it
    ]
    return {"lead_events": events, "leads": leads, "lead_source_history": history,
            "lead_assignments": assignments, "dead_letters": dead_letters, "lead_outcomes": outcomes}


def load_known_world(client) -> tuple[str, list[str]]:
    """A new dataset with tables, views and the known rows: (dataset, report of ensure_dataset_and_tables)."""
    dataset, report = new_dataset(client)
    for table, records in known_rows().items():
        insert(client, dataset, table, [to_row(r) for r in records])
    return dataset, report
