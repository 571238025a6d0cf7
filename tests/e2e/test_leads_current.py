"""``leads_current`` (schemas/views/leads_current.sql) in bqemulator equals the Python fold (transforms/lead_record)
over rows made by the pipeline's own functions: merges, merges of merges, a corrected primary, scores, routing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from schemas import bigquery as bq
from schemas.derive import to_row
from tests.helpers.bigquery import PROJECT, insert, new_dataset, query
from tests.helpers.leads import T0, lead
from transforms.identity import IdentityConfig, Resolver, decide_in_order
from transforms.identity_store import MemoryStore
from transforms.lead_record import assignment_versions, current_state, scored_version, survivors
from transforms.reference import load_reference
from transforms.routing import ASSIGNMENT, Rules, TeamState, dispatch_lead, route_lead

pytestmark = pytest.mark.e2e
P1, P2, P3 = "+14155550101", "+14155550102", "+14155550103"
E1, E2 = "ann@example.org", "bob@example.org"


@pytest.fixture(scope="module")
def client(bigquery_emulator):
    c = bq.client_for(PROJECT, bigquery_emulator)
    yield c
    c.close()


def world():
    """Decisions for eight events (two merges, one a merge of merges; a late earlier event), scores, routing."""
    r = Resolver(MemoryStore(), IdentityConfig(), key=b"test")
    ds = decide_in_order(r, [
        lead("m1", phone=P1, source="knowlarity_call", event_s=100),
        lead("m2", email=E1, source="api", event_s=110),
        lead("m3", phone=P2, source="twilio_sms", event_s=105),
        lead("m4", phone=P2, email=E1, source="meta_lead_ads", event_s=130),  # m2's lead into m3's
        lead("m5", phone=P1, email=E1, source="google_ads_lead_form", event_s=140),  # m3's (and m2's) into m1's
        lead("m6", phone=P1, source="api", event_s=10, publish_s=150),  # earlier than all: corrects the primary
        lead("m7", phone=P3, email=E2, source="meta_lead_ads", event_s=200),
        lead("m7", phone=P3, email=E2, source="meta_lead_ads", event_s=200, publish_s=300),  # a redelivery
    ])
    leads = [d.lead for d in ds if d.lead]
    ref, state, sla = load_reference(), TeamState(), Rules(timedelta(seconds=120))
    scored = [replace(x, score=0.7, score_source="model", model_version="m:1", priority_tier="hot",
                      processed_at=T0 + timedelta(seconds=400)) for x in leads]
    assignments = []
    for x in scored[:2]:
        routed = route_lead(ref, replace(x, state="NY"))
        assignments += [rec for kind, rec in dispatch_lead(ref, state, routed, T0 + timedelta(seconds=500),
                                                          T0 + timedelta(seconds=500), sla) if kind == ASSIGNMENT]
    versions = [v for d in ds for v in d.versions] + [scored_version(x) for x in scored] + \
        [v for a in assignments for v in assignment_versions(a)]
    return ds, leads, versions


def test_leads_current_view_equals_the_python_fold(client):
    ds, leads, versions = world()
    events = [d.event for d in ds]
    merges = [m for d in ds for m in d.merges]
    into = survivors(merges)
    assert len(set(into.values())) == 1 and len(into) == 2  # m2's and m3's leads now count under m1's
    expected = []
    for x in leads:
        if x.lead_id in into:
            expected.append(current_state(x, [v for v in versions if v.lead_id == x.lead_id],
                                          [e for e in events if e.lead_id == x.lead_id], into[x.lead_id]))
        else:
            members = {x.lead_id} | {m for m, s in into.items() if s == x.lead_id}
            expected.append(current_state(x, [v for v in versions if v.lead_id in members],
                                          [e for e in events if e.lead_id in members], None, members - {x.lead_id}))
    dataset, _ = new_dataset(client)
    for table, rows in (("leads", leads), ("lead_events", events), ("lead_merges", merges),
                        ("lead_versions", versions * 2)):  # versions twice: a redelivered insert changes nothing
        insert(client, dataset, table, [to_row(r) for r in rows])
    got = query(client, dataset, "leads_current", "lead_id")
    want = sorted((to_row(r) for r in expected), key=lambda r: r["lead_id"])
    assert [normal(r) for r in got] == [normal(r) for r in want]
    live = [r for r in got if r["status"] != "merged"]
    assert len(live) == 2  # two people
    person = next(r for r in live if r["merged_lead_ids"])
    assert person["primary_source"] == "api" and person["source_count"] == 5 and person["events"] == 6
    assert person["status"] == "assigned" and person["attempts"] == 1 and person["agent_id"]


def normal(row: dict) -> dict:
    """Rows compared as JSON values: timestamps as instants, floats rounded."""
    out = {}
    for k, v in row.items():
        if hasattr(v, "isoformat"):
            v = v.isoformat().replace("+00:00", "Z")
            v = v if "." in v else v.replace("Z", ".000000Z")
        elif isinstance(v, str) and len(v) >= 20 and v[4] == "-" and v[10] == "T":
            from datetime import datetime

            v = datetime.fromisoformat(v.replace("Z", "+00:00")).isoformat().replace("+00:00", "Z")
            v = v if "." in v else v.replace("Z", ".000000Z")
        elif isinstance(v, float):
            v = round(v, 9)
        out[k] = v
    return out
