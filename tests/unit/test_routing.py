"""Territory resolution, team choice, weighted round robin and the dispatcher's SLA logic (pure functions),
plus reference-data loading errors and enrichment."""

import dataclasses
import itertools
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from tests.helpers.leads import WED_15_UTC, lead_record
from transforms.enrich import enrich_lead, zip_geo
from transforms.reference import Agent, ReferenceCache, ReferenceDataError, load_reference
from transforms.routing import (
    AgentEvent,
    Rules,
    TeamState,
    dispatch_lead,
    expire,
    on_agent_event,
    pick_agent,
    resolve_territory,
    route_lead,
    team_for,
)

REF = load_reference()
SLA = timedelta(seconds=120)
RULES = Rules(SLA)


def bundled_dir(tmp_path: Path) -> Path:
    src = Path(str(resources.files("transforms.reference_data")))
    dst = tmp_path / "ref"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return dst


@pytest.mark.parametrize("country, postal, state, phone, expected", [
    ("US", "10016", "NY", None, ("us-nyc", "postal_code")),           # postal prefix beats state
    ("US", "10016-1234", None, None, ("us-nyc", "postal_code")),
    ("US", "94103", "CA", None, ("us-west", "state")),                # no postal rule for 941: state
    ("US", None, "California", None, ("us-west", "state")),           # full state names
    ("US", None, " il ", None, ("us-central", "state")),
    ("US", None, None, "+13125550111", ("us-central", "phone_region")),  # Chicago, IL number
    ("US", None, None, "+16175550100", ("us-east", "phone_region")),     # 'Massachusetts'
    ("US", None, "Puerto Rico", None, ("us-national", "country")),
    (None, None, None, "+12125550123", ("us-east", "phone_region")),     # country from the phone
    ("GB", "N1 9GU", None, None, ("gb-london", "postal_code")),
    ("GB", "EC1A 1BB", None, None, ("gb-london", "postal_code")),
    ("GB", "NE1 4ST", None, None, ("gb-national", "country")),        # area 'N' must not match 'NE'
    ("GB", "M1 1AE", "Greater Manchester", None, ("gb-national", "country")),
    ("IN", "560001", "Karnataka", None, ("in-south", "state")),
    ("IN", None, "Maharashtra", None, ("in-west", "state")),
    ("IN", None, "Delhi", None, ("in-national", "country")),
    ("FR", "75001", None, "+33142685300", (None, None)),              # no territory: manual review
    (None, None, None, None, (None, None)),
])
def test_territory_resolution(country, postal, state, phone, expected):
    assert resolve_territory(REF, country, postal, state, phone) == expected


def test_team_by_territory_and_tier():
    assert team_for(REF, "us-nyc", "hot") == "nyc-priority"
    assert team_for(REF, "us-nyc", "warm") == "nyc-sales"
    assert team_for(REF, "us-nyc", None) == "nyc-sales"
    assert team_for(REF, "us-west", "hot") == "us-west-priority"
    assert team_for(REF, "gb-national", "cold") == "uk-sales"
    assert team_for(REF, None, "hot") is None
    routed = route_lead(REF, lead_record(postal_code="10001", priority_tier="hot"))
    assert (routed.territory, routed.territory_match, routed.team) == ("us-nyc", "postal_code", "nyc-priority")


def _agents(weights: dict[str, int]) -> list[Agent]:
    return [Agent(a, "t", a, w, "UTC", frozenset(range(7)), 0, 1440, True) for a, w in weights.items()]


def test_weighted_round_robin_is_exactly_proportional_and_smooth():
    agents = _agents({"a": 5, "b": 3, "c": 1, "d": 1})
    state = TeamState()
    picks = [pick_agent(state, agents).agent_id for _ in range(1000)]
    assert Counter(picks) == {"a": 500, "b": 300, "c": 100, "d": 100}
    first = picks[:10]
    assert Counter(first) == {"a": 5, "b": 3, "c": 1, "d": 1}  # every window of one cycle is exact
    assert all(x != y or x == "a" for x, y in itertools.pairwise(first))  # only the heaviest repeats


def test_weighted_round_robin_skips_unavailable_and_off_shift_agents():
    team = REF.agents["us-west-sales"]  # usw-1 24/7 cap 3, usw-2 Mon-Fri 9-18 LA cap 1, usw-3 unavailable
    state = TeamState()
    at_night = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # 02:00 in Los Angeles
    from transforms.routing import candidates
    assert [a.agent_id for a in candidates(REF, state, "us-west-sales", at_night)] == ["agt-usw-1"]
    assert {a.agent_id for a in candidates(REF, state, "us-west-sales", WED_15_UTC + timedelta(hours=3))} == {
        "agt-usw-1", "agt-usw-2"}
    assert not any(a.available for a in team if a.agent_id == "agt-usw-3")


def _dispatch(leads, at=WED_15_UTC):
    state = TeamState()
    outs = []
    for i, lid in enumerate(leads):
        routed = route_lead(REF, lead_record(lid, state="NY"))  # us-east-sales: use-1 (3), use-2 (2), use-3 (1)
        outs += dispatch_lead(REF, state, routed, at + timedelta(seconds=i), at, RULES)
    return state, outs


def test_assignment_then_acceptance():
    state, outs = _dispatch(["L1"])
    kinds = [k for k, _ in outs]
    assert kinds == ["lead", "delivery", "assignment"]
    row = outs[0][1]
    assert (row.routing_status, row.team, row.agent_id) == ("assigned", "us-east-sales", "agt-use-1")
    assert outs[2][1].sla_deadline == WED_15_UTC + SLA
    ev = AgentEvent("e1", "agt-use-1", "accepted", WED_15_UTC + timedelta(seconds=30), "L1")
    steps = on_agent_event(REF, state, "us-east-sales", ev, WED_15_UTC, RULES)
    assert [(s.action, s.agent_id) for _, s in steps] == [("accepted", "agt-use-1")]
    assert not state.pending
    assert expire(REF, state, "us-east-sales", WED_15_UTC + timedelta(hours=1), WED_15_UTC, RULES) == []
    again = on_agent_event(REF, state, "us-east-sales", ev, WED_15_UTC, RULES)
    assert again == []  # the same event id twice is ignored


def test_sla_expiry_reassigns_and_sets_the_agent_offline_then_manual_review():
    state, _ = _dispatch(["L1"])
    t1 = WED_15_UTC + SLA
    assert expire(REF, state, "us-east-sales", t1 - timedelta(seconds=1), WED_15_UTC, RULES) == []  # not yet
    outs = expire(REF, state, "us-east-sales", t1, WED_15_UTC, RULES)
    summary = [(k, getattr(r, "action", None) or getattr(r, "status", None), getattr(r, "agent_id", None))
               for k, r in outs]
    assert summary == [("assignment", "expired", "agt-use-1"), ("agent_status", "offline", "agt-use-1"),
                       ("delivery", None, "agt-use-2"), ("assignment", "reassigned", "agt-use-2")]
    assert state.status == {"agt-use-1": "offline"} and state.pending["L1"].attempt == 2
    # agt-use-3 is on shift (Mon-Sat 9-17 New York): the third offer goes there, then nobody is left
    outs = expire(REF, state, "us-east-sales", t1 + SLA, WED_15_UTC, RULES)
    assert [r.agent_id for k, r in outs if k == "assignment" and r.action == "reassigned"] == ["agt-use-3"]
    outs = expire(REF, state, "us-east-sales", t1 + 2 * SLA, WED_15_UTC, RULES)
    review = [r for k, r in outs if k == "assignment" and r.action == "manual_review"]
    assert len(review) == 1 and review[0].reason == "all_agents_offered" and review[0].attempt == 4
    assert any(k == "manual_review" for k, _ in outs) and not state.pending
    # an agent set offline gets nothing until it comes back online
    on_agent_event(REF, state, "us-east-sales", AgentEvent("o1", "agt-use-1", "online", t1, None), t1, RULES)
    assert "agt-use-1" not in state.status


def test_rejection_reassigns_and_stray_events_are_recorded_and_ignored():
    state, outs = _dispatch(["L1", "L2"])
    assert [r.agent_id for k, r in outs if k == "lead"] == ["agt-use-1", "agt-use-2"]
    rej = on_agent_event(REF, state, "us-east-sales",
                         AgentEvent("r1", "agt-use-2", "rejected", WED_15_UTC, "L2"), WED_15_UTC, RULES)
    assert [(r.action, r.agent_id) for k, r in rej if k == "assignment"] == [
        ("rejected", "agt-use-2"), ("reassigned", "agt-use-1")]
    wrong = on_agent_event(REF, state, "us-east-sales",
                           AgentEvent("w1", "agt-use-3", "accepted", WED_15_UTC, "L1"), WED_15_UTC, RULES)
    assert [(r.action, r.reason) for _, r in wrong] == [("ignored", "not_assigned_agent")]
    unknown = on_agent_event(REF, state, "us-east-sales",
                             AgentEvent("u1", "agt-use-1", "accepted", WED_15_UTC, "nope"), WED_15_UTC, RULES)
    assert [(r.action, r.reason, r.lead_id) for _, r in unknown] == [("ignored", "unknown_lead", "nope")]
    on_agent_event(REF, state, "us-east-sales", AgentEvent("a1", "agt-use-1", "accepted", WED_15_UTC, "L1"),
                   WED_15_UTC, RULES)
    closed = on_agent_event(REF, state, "us-east-sales",
                            AgentEvent("a2", "agt-use-1", "accepted", WED_15_UTC, "L1"), WED_15_UTC, RULES)
    assert [(r.action, r.reason) for _, r in closed] == [("ignored", "not_pending")]


def test_without_sla_nothing_is_kept_or_expires():
    state = TeamState()
    routed = route_lead(REF, lead_record("L1", state="NY"))
    outs = dispatch_lead(REF, state, routed, WED_15_UTC, WED_15_UTC, Rules(None))
    assert [k for k, _ in outs] == ["lead", "delivery", "assignment"] and outs[2][1].sla_deadline is None
    assert not state.pending and state.next_deadline() is None


def test_without_agent_events_no_available_agent_goes_to_manual_review_with_reason():
    # nothing could free an agent without agent events, so the lead does not wait (tests/unit/test_desk.py: queue)
    state = TeamState(status={"agt-use-1": "offline", "agt-use-2": "away", "agt-use-3": "away"})
    routed = route_lead(REF, lead_record("L1", state="NY"))
    outs = dispatch_lead(REF, state, routed, WED_15_UTC, WED_15_UTC, Rules(None))
    assert [k for k, _ in outs] == ["lead", "manual_review", "assignment"]
    assert outs[0][1].routing_status == "manual_review" and outs[0][1].routing_reason == "no_available_agent"


@pytest.mark.parametrize("table, old, new, message", [
    ("territories.csv", "us-nyc,US,postal_prefix", "us-nyc,US,zip_prefix", "match_type must be one of"),
    ("territories.csv", "gb-national,GB,country,GB", "gb-national,GB,country,FR", "must match its own country"),
    ("teams.csv", "nyc-priority,us-nyc,hot", "nyc-priority,us-nyc,urgent", "priority_tier must be"),
    ("teams.csv", "uk-sales,gb-london", "uk-sales,gb-nowhere", "not in the territories table"),
    ("agents.csv", "agt-nyc-p1,nyc-priority,NYC priority 1,3", "agt-nyc-p1,nyc-priority,NYC priority 1,0",
     "capacity must be a positive integer"),
    ("agents.csv", "America/Chicago,Mon-Sun", "America/Chicgo,Mon-Sun", "unknown time zone"),
    ("agents.csv", "Mon-Fri,08:00,20:00", "Mon-Fri,20:00,08:00", "work_end must be after work_start"),
    ("agents.csv", "Mon-Sat,09:00,17:00", "Mon-Someday,09:00,17:00", "work_days must be like"),
    ("agents.csv", "agt-uk-2,uk-sales", "agt-uk-1,uk-sales", "duplicate agent_id"),
    ("sources.csv", ",0.8,true", ",1.8,true", "reliability 1.8 is outside 0..1"),
])
def test_malformed_reference_rows_fail_loudly_with_file_and_line(tmp_path, table, old, new, message):
    d = bundled_dir(tmp_path)
    path = d / table
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    line = 1 + text[: text.index(old)].count("\n")
    with pytest.raises(ReferenceDataError, match=message) as e:
        load_reference(str(d))
    assert f"{path}:{line}:" in str(e.value)


def test_reference_cache_reloads_on_schedule_and_keeps_the_last_good_version(tmp_path):
    d = bundled_dir(tmp_path)
    now = [0.0]
    cache = ReferenceCache(str(d), None, refresh_seconds=60, clock=lambda: now[0])
    assert cache.get().states[("US", "NY")] == "us-east"
    territories = d / "territories.csv"
    territories.write_text(territories.read_text().replace(",NY;NJ;", ",NJ;").replace(",IL;TX;", ",NY;IL;TX;"))
    now[0] = 30
    assert cache.get().states[("US", "NY")] == "us-east"  # not yet due
    now[0] = 61
    assert cache.get().states[("US", "NY")] == "us-central" and cache.reloads == 1
    territories.write_text("territory_id,country\nbroken,US\n")
    now[0] = 200
    assert cache.get().states[("US", "NY")] == "us-central"  # a bad edit keeps the previous version


def test_enrichment_fills_geo_phone_email_and_source_columns():
    enriched = enrich_lead(lead_record(postal_code="10001", phone_e164="+447911123456", email="x@mailinator.com",
                                       primary_source="email:unknown.example"), REF, 0.3)
    assert (enriched.geo_city, enriched.geo_state) == ("New York", "NY")
    assert abs(enriched.latitude - 40.75) < 0.1 and abs(enriched.longitude + 74.0) < 0.1
    assert enriched.phone_type == "mobile" and enriched.phone_carrier and "Europe/London" in enriched.phone_timezones
    assert enriched.email_domain_class == "disposable"
    assert enriched.source_verified is False and enriched.source_reliability == 0.3
    known = enrich_lead(lead_record(email="a@acmecorp.com"), REF, 0.3)
    assert known.source_verified is True and known.source_reliability == 0.8
    assert known.email_domain_class == "corporate" and known.phone_type is None
    assert zip_geo("GB", "10001") is None and zip_geo("US", "ABCDE") is None
    assert dataclasses.asdict(known)["phone_timezones"] == []


def test_lead_repr_hides_personal_data():
    text = repr(lead_record(phone_e164="+12125550123", email="jane@example.com", full_name="Jane Roe"))
    assert "+12125550123" not in text and "jane@" not in text and "Jane" not in text and "lead_id='L1'" in text


def test_evolve_copies_like_dataclasses_replace_and_refuses_unknown_fields():
    from schemas.derive import evolve

    original = lead_record(state="NY")
    copy = evolve(original, team="t", agent_id="a")
    assert copy == dataclasses.replace(original, team="t", agent_id="a") and original.team is None
    with pytest.raises(TypeError, match="no fields"):
        evolve(original, tema="t")
