"""The dashboards' BigQuery views (schemas/views/*.sql) in bqemulator, over rows whose answers are known.

``known_rows()`` (tests/helpers/known_world.py) is a small world written out by hand: eight people (one a test lead)
from five sources over two days, with duplicates, replays, a duplicated streaming insert, re-assignments, an expired
assignment, dead letters redelivered, and outcomes reported twice. Every expected number below is worked out from
those rows by hand (the comments show the arithmetic), so a wrong join, grouping or filter in a view changes a number
and fails a test. ``test_views_over_the_pipeline_output`` then runs the bounded pipeline over the bundled sample (with
its simulated agent events) and checks the views against the sample's manifest, the pipeline's own daily counts, and
speed to lead recomputed in Python from the assignment rows.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from google.cloud import bigquery

from schemas import bigquery as bq
from schemas.records import TABLES
from tests.helpers.bigquery import PROJECT, insert, new_dataset, query
from tests.helpers.known_world import (
    D1,
    D2,
    EVENTS,
    GLOBEX,
    GOOGLE,
    META,
    REALTOR,
    SCORES,
    T1,
    ZILLOW,
    at,
    load_known_world,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "pipelines" / "synthetic" / "samples" / "messages.jsonl"
AGENT_EVENTS = REPO / "pipelines" / "synthetic" / "samples" / "agent_events.jsonl"


@pytest.fixture(scope="module")
def client(bigquery_emulator):
    c = bq.client_for(PROJECT, bigquery_emulator)
    yield c
    c.close()


@pytest.fixture(scope="module")
def world(client):
    return load_known_world(client)


def approx_rows(rows: list[dict]) -> list[dict]:
    return [{k: pytest.approx(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


# --------------------------------------------------------------------------------------
# Files and creation
# --------------------------------------------------------------------------------------


def test_view_files_say_what_they_answer_and_use_only_the_two_placeholders():
    views = bq.load_views()
    assert [v.name for v in views] == [
        "daily_leads_by_source", "dead_letters_daily", "leads_current", "provider_overlap", "routing_decisions",
        "score_distribution", "source_reliability", "speed_to_lead"]
    for view in views:
        assert view.template.startswith("-- Question: ") and len(view.question) > 60, view.name
        sql = view.sql("my-project", "my_dataset")
        assert "{" not in sql and "}" not in sql
        tables = set(re.findall(r"`my-project\.my_dataset\.([a-z_]+)`", sql))
        assert tables and tables <= set(TABLES), (view.name, tables)
    with pytest.raises(ValueError, match="invalid BigQuery project"):
        bq.render(views[0].template, "bad project`; DROP", "d")
    with pytest.raises(ValueError, match="unknown placeholder"):
        bq.render("SELECT 1 FROM `{project}.{dataset}.{table}`", "my-project", "d")


def test_views_are_created_with_the_tables_and_updated_when_ensured_again(client, world):
    dataset, report = world
    names = bq.view_names()
    assert report[-len(names):] == [f"created view {PROJECT}.{dataset}.{n}" for n in names]
    assert report[: -len(names)] == [f"created dataset {PROJECT}.{dataset}"] + [
        f"created table {PROJECT}.{dataset}.{t}" for t in TABLES]
    for view in bq.load_views():
        table = client.get_table(f"{PROJECT}.{dataset}.{view.name}")
        assert table.table_type == "VIEW" and table.description == view.question
    # The emulator does not return a view's query, so an existing view is always brought up to date.
    assert bq.ensure_views(client, PROJECT, dataset) == [f"updated view {PROJECT}.{dataset}.{n}" for n in names]


def test_a_view_that_does_not_compile_is_named_with_the_reason(client):
    """An old table without a column a view needs (say a persistent local dataset): a clear error, or a note."""
    dataset = f"v_{uuid.uuid4().hex[:10]}"
    client.create_dataset(bigquery.Dataset(f"{PROJECT}.{dataset}"))
    for name in TABLES:
        table = bq.table_definition(PROJECT, dataset, name)
        if name == "leads":
            table.schema = [f for f in table.schema if f.name != "source_reliability"]
        client.create_table(table)
    with pytest.raises(bq.ViewError, match=r"source_reliability \(source_reliability.sql\) does not compile"):
        bq.ensure_views(client, PROJECT, dataset)
    lines = bq.ensure_views(client, PROJECT, dataset, strict=False)
    bad = [line for line in lines if "does not compile" in line]
    assert len(bad) == 1 and bad[0].startswith(f"updated view {PROJECT}.{dataset}.source_reliability (")


# --------------------------------------------------------------------------------------
# Each view's numbers
# --------------------------------------------------------------------------------------


def test_daily_leads_by_source(client, world):
    dataset, _ = world
    cols = ("events", "new_leads", "cross_source", "duplicates", "replays", "test_events", "people",
            "unverified_source_events")
    want = {
        # day 1, meta: m01 new A, m03 duplicate A, m05 cross B, m06 new C, m07 replay A, m09 new G
        (D1, META, META): (6, 3, 1, 1, 1, 0, 4, 0),
        # day 1, google: m02 cross A, m08 new T (test lead)
        (D1, GOOGLE, GOOGLE): (2, 1, 1, 0, 0, 1, 2, 0),
        (D1, ZILLOW, "inbound_email"): (1, 1, 0, 0, 0, 0, 1, 0),  # m04 new B
        (D2, ZILLOW, "inbound_email"): (2, 0, 2, 0, 0, 0, 2, 0),  # m10 cross C, m13 cross A
        (D2, GOOGLE, GOOGLE): (2, 1, 0, 0, 1, 0, 1, 0),  # m11 new D, m12 replay D (received day 2)
        (D2, META, META): (1, 1, 0, 0, 0, 0, 1, 0),  # m14 new E
        (D2, GLOBEX, "inbound_email"): (1, 1, 0, 0, 0, 0, 1, 1),  # m15 new F, unverified source
        (D2, REALTOR, "inbound_email"): (1, 1, 0, 0, 0, 0, 1, 0),  # m16 new H
    }
    rows = query(client, dataset, "daily_leads_by_source", "received_date, source_id")
    got = {(r["received_date"], r["source_id"], r["provider"]): tuple(r[c] for c in cols) for r in rows}
    assert got == want
    assert sum(v[0] for v in got.values()) == len(EVENTS) and sum(v[1] for v in got.values()) == len(SCORES)


def test_provider_overlap(client, world):
    dataset, _ = world
    # People per source: meta A B C E G (5), google A T D (3), zillow B C A (3), globex F (1), realtor H (1).
    # Shared: meta & google {A}; meta & zillow {A, B, C}; google & zillow {A}. Who came first: A meta (day 1,
    # 0 s) < google (60 s) < zillow (day 2); B zillow (30 s) < meta (300 s); C meta (day 1) < zillow (day 2).
    want = [
        # source_a, source_b, shared_people, source_a_first, source_a_people, share_of_source_a
        (GLOBEX, GLOBEX, 1, 0, 1, 1.0),
        (GOOGLE, GOOGLE, 3, 0, 3, 1.0),
        (GOOGLE, META, 1, 0, 3, 1 / 3),
        (GOOGLE, ZILLOW, 1, 1, 3, 1 / 3),
        (META, GOOGLE, 1, 1, 5, 1 / 5),
        (META, META, 5, 0, 5, 1.0),  # A's history row was inserted twice: still one person
        (META, ZILLOW, 3, 2, 5, 3 / 5),
        (REALTOR, REALTOR, 1, 0, 1, 1.0),
        (ZILLOW, GOOGLE, 1, 0, 3, 1 / 3),
        (ZILLOW, META, 3, 1, 3, 1.0),
        (ZILLOW, ZILLOW, 3, 0, 3, 1.0),
    ]
    rows = query(client, dataset, "provider_overlap", "source_a, source_b")
    cols = ("source_a", "source_b", "shared_people", "source_a_first", "source_a_people", "share_of_source_a")
    assert [tuple(r[c] for c in cols) for r in rows] == [pytest.approx(w) for w in want]


def test_score_distribution(client, world):
    dataset, _ = world
    want = [
        # lead_date, primary_source, priority_tier, score_source, score_bucket, leads, score_sum, avg_score
        (D1, META, "hot", "model", 0.8, 2, 0.82 + 0.88, 0.85),  # A 0.82, G 0.88
        (D1, META, "warm", "fallback", 0.3, 1, 0.30, 0.30),  # C: a score of exactly 0.3 is in bucket 0.3
        (D1, ZILLOW, "warm", "model", 0.4, 1, 0.45, 0.45),  # B
        (D2, GLOBEX, "hot", "model", 0.9, 1, 1.0, 1.0),  # F: a score of 1.0 is in the top bucket
        (D2, GOOGLE, "cold", "model", 0.1, 1, 0.15, 0.15),  # D
        (D2, META, "unscored", "none", None, 1, None, None),  # E
        (D2, REALTOR, "warm", "model", 0.5, 1, 0.55, 0.55),  # H
    ]  # T (google, 0.9, a test lead) is not counted
    rows = query(client, dataset, "score_distribution", "lead_date, primary_source, priority_tier")
    cols = ("lead_date", "primary_source", "priority_tier", "score_source", "score_bucket", "leads", "score_sum",
            "avg_score")
    assert [tuple(r[c] for c in cols) for r in rows] == [pytest.approx(w) for w in want]


def test_speed_to_lead(client, world):
    dataset, _ = world
    rows = query(client, dataset, "speed_to_lead", "lead_date, team")
    # West, day 1: A, B, C, G. To assignment [10, 30, 60, 90] s: p50 = 30 + 0.5 * 30 = 45, p90 (rank 2.7) =
    # 60 + 0.7 * 30 = 81. To acceptance [70, 180, 400] (C never accepted): p50 180, p90 (rank 1.8) =
    # 180 + 0.8 * 220 = 356. Assignment to acceptance [60, 120, 370]: p50 120, p90 = 120 + 0.8 * 250 = 320.
    # East, day 2: D, F. To assignment [20, 40]: 30, 38. To acceptance [100, 200]: 150, 190. Between [60, 180]:
    # 120, 168. West, day 2: H alone (15.25, 45.6, 30.35: whole seconds would give 15, 45, 30). E (manual review
    # only) and the ignored event for an unknown lead are not counted.
    want = [
        {"lead_date": D1, "team": "west", "leads_assigned": 4, "leads_accepted": 3, "acceptance_rate": 0.75,
         "leads_reassigned": 2, "expired_assignments": 1,
         "p50_to_assignment_s": 45.0, "p90_to_assignment_s": 81.0,
         "p50_to_acceptance_s": 180.0, "p90_to_acceptance_s": 356.0,
         "p50_assignment_to_acceptance_s": 120.0, "p90_assignment_to_acceptance_s": 320.0},
        {"lead_date": D2, "team": "east", "leads_assigned": 2, "leads_accepted": 2, "acceptance_rate": 1.0,
         "leads_reassigned": 0, "expired_assignments": 0,
         "p50_to_assignment_s": 30.0, "p90_to_assignment_s": 38.0,
         "p50_to_acceptance_s": 150.0, "p90_to_acceptance_s": 190.0,
         "p50_assignment_to_acceptance_s": 120.0, "p90_assignment_to_acceptance_s": 168.0},
        {"lead_date": D2, "team": "west", "leads_assigned": 1, "leads_accepted": 1, "acceptance_rate": 1.0,
         "leads_reassigned": 0, "expired_assignments": 0,
         "p50_to_assignment_s": 15.25, "p90_to_assignment_s": 15.25,
         "p50_to_acceptance_s": 45.6, "p90_to_acceptance_s": 45.6,
         "p50_assignment_to_acceptance_s": 30.35, "p90_assignment_to_acceptance_s": 30.35},
    ]
    assert rows == approx_rows(want)


def test_dead_letters_daily(client, world):
    dataset, _ = world
    rows = query(client, dataset, "dead_letters_daily", "failed_date, stage, error_type")
    cols = ("failed_date", "stage", "error_type", "provider", "dead_letters", "distinct_messages",
            "distinct_payloads", "truncated_payloads", "payload_bytes")
    assert [tuple(r[c] for c in cols) for r in rows] == [
        (D1, "decode", "invalid_utf8", "(unknown)", 1, 1, 1, 1, 5000),
        (D1, "parse", "invalid_json", META, 3, 2, 2, 0, 10 + 10 + 12),  # m90 twice, m91
        (D2, "normalize", "missing_contact", GOOGLE, 1, 1, 1, 0, 100),
        (D2, "parse", "invalid_json", META, 1, 1, 1, 0, 7),
    ]
    assert rows[1]["first_failed_at"] == at(T1, 1) and rows[1]["last_failed_at"] == at(T1, 120)


def test_source_reliability(client, world):
    dataset, _ = world
    rows = query(client, dataset, "source_reliability", "source_id")
    # Latest outcomes: A won (5000, after being reported lost), B lost, D won (no value), G won (1200), F lost;
    # C, E, H have none. T (test lead) and X (unknown) do not count.
    want = [
        # globex: F (first) lost
        {"source_id": GLOBEX, "people": 1, "people_with_outcome": 1, "outcome_coverage": 1.0, "converted": 0,
         "conversion_rate": 0.0, "people_first": 1, "first_with_outcome": 1, "converted_first": 0,
         "conversion_rate_first": 0.0, "converted_value": 0.0, "registered_reliability": 0.3},
        # google: A won, D (first) won; T excluded
        {"source_id": GOOGLE, "people": 2, "people_with_outcome": 2, "outcome_coverage": 1.0, "converted": 2,
         "conversion_rate": 1.0, "people_first": 1, "first_with_outcome": 1, "converted_first": 1,
         "conversion_rate_first": 1.0, "converted_value": 5000.0, "registered_reliability": 0.85},
        # meta: A (first) won, B lost, C (first) none, E (first) none, G (first) won
        {"source_id": META, "people": 5, "people_with_outcome": 3, "outcome_coverage": 0.6, "converted": 2,
         "conversion_rate": 2 / 3, "people_first": 4, "first_with_outcome": 2, "converted_first": 2,
         "conversion_rate_first": 1.0, "converted_value": 6200.0, "registered_reliability": 0.9},
        # realtor: H (first), no outcome yet: rates are NULL
        {"source_id": REALTOR, "people": 1, "people_with_outcome": 0, "outcome_coverage": 0.0, "converted": 0,
         "conversion_rate": None, "people_first": 1, "first_with_outcome": 0, "converted_first": 0,
         "conversion_rate_first": None, "converted_value": 0.0, "registered_reliability": 0.7},
        # zillow: A won, B (first) lost, C none
        {"source_id": ZILLOW, "people": 3, "people_with_outcome": 2, "outcome_coverage": 2 / 3, "converted": 1,
         "conversion_rate": 0.5, "people_first": 1, "first_with_outcome": 1, "converted_first": 0,
         "conversion_rate_first": 0.0, "converted_value": 5000.0, "registered_reliability": 0.8},
    ]
    assert rows == approx_rows(want)


# --------------------------------------------------------------------------------------
# Over the pipeline's output for the bundled sample
# --------------------------------------------------------------------------------------


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
def test_views_over_the_pipeline_output(client, tmp_path):
    """The bounded pipeline over the sample; its tables loaded; views checked against the manifest."""
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", f"--input_file={SAMPLE}",
         f"--agent_events_file={AGENT_EVENTS}", f"--output_dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads(SAMPLE.with_name(SAMPLE.name + ".manifest.json").read_text())
    dataset, _ = new_dataset(client)
    tables = {}
    for table in ("leads", "lead_events", "lead_source_history", "dead_letters", "source_daily_counts",
                  "lead_assignments", "lead_versions", "lead_merges"):
        tables[table] = read_jsonl(out / f"{table}.jsonl")
        insert(client, dataset, table, tables[table])

    # The living record: the view over the tables equals the bounded run's own fold (leads_current.jsonl).
    from tests.e2e.test_leads_current import normal

    current = query(client, dataset, "leads_current", "lead_id")
    folded = sorted(read_jsonl(out / "leads_current.jsonl"), key=lambda r: r["lead_id"])
    assert [normal(r) for r in current] == [normal(r) for r in folded]
    assert sum(1 for r in current if r["status"] != "merged") == manifest["persons"]
    # the sample's agent events answer the offers of the rules before the queue, so under the desk rules many of
    # its leads wait and time out; accepted ones remain, and every status is a routing status
    assert "accepted" in {r["status"] for r in current}
    assert {r["status"] for r in current} <= {"new", "scored", "merged", "assigned", "accepted", "queued",
                                              "manual_review", "closed"}

    daily = query(client, dataset, "daily_leads_by_source", "received_date, source_id")
    assert sum(r["events"] for r in daily) == manifest["lead_events"]
    assert sum(r["new_leads"] for r in daily) == manifest["persons"]
    per_provider = Counter()
    for r in daily:
        per_provider[r["provider"]] += r["events"]
        assert r["events"] == r["new_leads"] + r["cross_source"] + r["duplicates"] + r["replays"]
    assert dict(per_provider) == manifest["providers"]
    # The pipeline's windowed daily counts (latest pane per source and day) agree with the view's recount.
    latest = {}
    for r in tables["source_daily_counts"]:
        key = (r["source_id"], r["event_date"])
        if key not in latest or r["pane_index"] > latest[key]["pane_index"]:
            latest[key] = r
    cols = ("events", "new_leads", "cross_source", "duplicates", "replays")
    by_source_day = Counter()
    for r in daily:
        for c in cols:
            by_source_day[(r["source_id"], r["received_date"].isoformat(), c)] += r[c]
    assert {k: v for k, v in by_source_day.items() if v} == {
        (s, d, c): r[c] for (s, d), r in latest.items() for c in cols if r[c]}

    dead = query(client, dataset, "dead_letters_daily", "stage, error_type")
    reasons = Counter()
    for r in dead:
        reasons[f"{r['stage']}/{r['error_type']}"] += r["dead_letters"]
    assert {k: v for k, v in reasons.items() if not k.startswith("agent_event/")} == manifest["dead_letters"]
    assert reasons["agent_event/invalid_agent_event"] >= 1  # the simulated desk sends one malformed event

    # The overlap diagonal counts each source's people; off the diagonal, pairs agree with the history.
    overlap = query(client, dataset, "provider_overlap", "source_a, source_b")
    sources_of: dict[str, set[str]] = {}
    for h in tables["lead_source_history"]:
        sources_of.setdefault(h["lead_id"], set()).add(h["source_id"])
    pairs = Counter((a, b) for s in sources_of.values() for a in s for b in s)
    assert {(r["source_a"], r["source_b"]): r["shared_people"] for r in overlap} == dict(pairs)
    assert any(r["source_a"] != r["source_b"] for r in overlap)  # the sample has cross-source people

    scores = query(client, dataset, "score_distribution", "lead_date, primary_source")
    assert sum(r["leads"] for r in scores) == manifest["persons"] - sum(1 for r in tables["leads"] if r["is_test"])

    # Speed to lead, recomputed from the assignment rows: first 'assigned' step per lead (its team, its time),
    # first 'accepted' step; per day of the lead's event and team, exact percentiles (numpy's linear method is
    # PERCENTILE_CONT's).
    steps = sorted(tables["lead_assignments"], key=lambda r: (r["action_at"], r["attempt"], r["assignment_event_id"]))
    first, accepted = {}, {}
    for r in steps:
        if r["action"] == "assigned":
            first.setdefault(r["lead_id"], r)
        elif r["action"] == "accepted":
            accepted.setdefault(r["lead_id"], r)
    groups: dict[tuple, list] = {}
    for lead, r in first.items():
        event, assigned = ts(r["lead_event_time"]), ts(r["action_at"])
        acceptance = ts(accepted[lead]["action_at"]) if lead in accepted else None
        groups.setdefault((event.date(), r["team"]), []).append(
            ((assigned - event).total_seconds(), (acceptance - event).total_seconds() if acceptance else None))
    speed = query(client, dataset, "speed_to_lead", "lead_date, team")
    assert {(r["lead_date"], r["team"]) for r in speed} == set(groups)
    assert sum(r["leads_accepted"] for r in speed) == len(accepted.keys() & first.keys()) > 0
    for r in speed:
        values = groups[(r["lead_date"], r["team"])]
        to_accept = [a for _, a in values if a is not None]
        assert r["leads_assigned"] == len(values) and r["leads_accepted"] == len(to_accept)
        assert r["p90_to_assignment_s"] == pytest.approx(float(np.percentile([a for a, _ in values], 90)))
        if to_accept:
            assert r["p50_to_acceptance_s"] == pytest.approx(float(np.percentile(to_accept, 50)))
            assert r["p90_to_acceptance_s"] == pytest.approx(float(np.percentile(to_accept, 90)))
        else:
            assert r["p50_to_acceptance_s"] is None

    # No outcomes reported yet: every source is listed, with its people and NULL rates.
    reliability = query(client, dataset, "source_reliability", "source_id")
    test_leads = {lead["lead_id"] for lead in tables["leads"] if lead["is_test"]}
    people = Counter(source for lead, source in {(h["lead_id"], h["source_id"]) for h in tables["lead_source_history"]}
                     if lead not in test_leads)
    assert {r["source_id"]: r["people"] for r in reliability} == dict(people)
    assert all(r["conversion_rate"] is None and r["people_with_outcome"] == 0 for r in reliability)
