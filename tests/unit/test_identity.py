"""Identity across phones and e-mails, decided on arrival: table-driven cases, merges, guards, corrections,
retried attempts, restarts through a store, and the property that any arrival order ends the same."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.leads import T0, lead
from transforms.blocklist import Blocklist
from transforms.identity import (
    CROSS_SOURCE,
    DUPLICATE_SAME_SOURCE,
    NEW,
    REPLAY,
    IdentityConfig,
    Resolver,
    decide_in_order,
    event_id_for,
    seed_rows,
)
from transforms.identity_store import MemoryStore, SqliteStore, open_store
from transforms.lead_record import primary_of

P1, P2, P3 = "+14155550101", "+14155550102", "+14155550103"
E1, E2 = "ann@example.org", "bob@example.org"


def resolver(store=None, **config) -> Resolver:
    return Resolver(store or MemoryStore(), IdentityConfig(**config), key=b"test")


def persons(decisions) -> list[set[str]]:
    """Units grouped by the live lead they ended in (merges followed)."""
    into = {}
    for d in decisions:
        for m in d.merges:
            into[m.merged_lead_id] = m.into_lead_id
    groups: dict[str, set[str]] = {}
    for d in decisions:
        lead_id = d.event.lead_id
        while lead_id in into:
            lead_id = into[lead_id]
        groups.setdefault(lead_id, set()).add(d.event.message_id)
    return sorted(groups.values(), key=sorted)


def outcomes(decisions):
    return [(d.event.message_id, d.outcome) for d in decisions]


# (name, events as (unit, phone, email, source, event_s), expected outcomes, expected persons)
CASES = [
    ("phone then e-mail", [("m1", P1, E1, "meta", 0), ("m2", None, E1, "web", 10)],
     [NEW, CROSS_SOURCE], [{"m1", "m2"}]),
    ("e-mail then phone", [("m1", None, E1, "web", 0), ("m2", P1, E1, "meta", 10), ("m3", P1, None, "call", 20)],
     [NEW, CROSS_SOURCE, CROSS_SOURCE], [{"m1", "m2", "m3"}]),
    ("changed phone, same e-mail",
     [("m1", P1, E1, "meta", 0), ("m2", P2, E1, "meta", 10), ("m3", P2, None, "call", 20)],
     [NEW, DUPLICATE_SAME_SOURCE, CROSS_SOURCE], [{"m1", "m2", "m3"}]),
    ("two strangers stay two", [("m1", P1, E1, "meta", 0), ("m2", P2, E2, "meta", 10)],
     [NEW, NEW], [{"m1"}, {"m2"}]),
    ("a form reveals two known persons are one", [("m1", P1, None, "call", 0), ("m2", None, E1, "web", 10),
                                                   ("m3", P1, E1, "meta", 20), ("m4", None, E1, "web", 30)],
     [NEW, NEW, CROSS_SOURCE, DUPLICATE_SAME_SOURCE], [{"m1", "m2", "m3", "m4"}]),
    ("merge of merges", [("m1", P1, None, "call", 0), ("m2", None, E1, "web", 10), ("m3", P2, None, "sms", 20),
                         ("m4", P1, E1, "meta", 30), ("m5", P2, E1, "api", 40)],
     [NEW, NEW, NEW, CROSS_SOURCE, CROSS_SOURCE], [{"m1", "m2", "m3", "m4", "m5"}]),
]


@pytest.mark.parametrize("name,events,expected,groups", CASES, ids=[c[0] for c in CASES])
def test_identity_cases(name, events, expected, groups):
    ds = decide_in_order(resolver(), [lead(u, phone=p, email=e, source=s, event_s=t) for u, p, e, s, t in events])
    assert [o for _, o in outcomes(ds)] == expected
    assert persons(ds) == sorted(groups, key=sorted)


def test_a_merge_keeps_the_older_lead_and_records_it_without_the_identifier():
    r = resolver()
    call, web, form = r.decide(lead("m1", phone=P1, source="call", event_s=0)), \
        r.decide(lead("m2", email=E1, source="web", event_s=10)), \
        r.decide(lead("m3", phone=P1, email=E1, source="meta", event_s=20))
    (merge,) = form.merges
    assert (merge.merged_lead_id, merge.into_lead_id, merge.linked_by) == (web.event.lead_id, call.event.lead_id,
                                                                          "email")
    assert form.event.lead_id == call.event.lead_id
    assert {v.change for v in form.versions} == {"new_source", "merged", "merged_into"}
    assert E1 not in repr(merge) and P1 not in repr(merge)


def test_merges_of_merges_repoint_every_absorbed_lead_to_the_last_survivor():
    r = resolver()
    ds = decide_in_order(r, [lead("m1", phone=P1, source="a", event_s=0), lead("m2", email=E1, source="b", event_s=10),
                             lead("m3", phone=P2, source="c", event_s=5),
                             lead("m4", phone=P2, email=E1, source="d", event_s=30),  # m2's lead into m3's
                             lead("m5", phone=P1, email=E1, source="e", event_s=40)])  # m3's (and m2's) into m1's
    first = ds[0].event.lead_id
    last_merges = {m.merged_lead_id: m.into_lead_id for m in ds[4].merges}
    assert last_merges == {ds[2].event.lead_id: first, ds[1].event.lead_id: first}


def test_primary_source_is_corrected_by_an_earlier_event_arriving_later():
    r = resolver()
    sms = r.decide(lead("sms", phone=P1, source="twilio_sms", event_s=100))
    form = r.decide(lead("form", phone=P1, source="google_ads", event_s=5, publish_s=130))
    assert (sms.outcome, form.outcome) == (NEW, CROSS_SOURCE)
    assert form.event.lead_id == sms.event.lead_id  # never a second lead
    (corrected,) = [v for v in form.versions if v.change == "primary_corrected"]
    assert (corrected.primary_source, corrected.first_seen_at) == ("google_ads", form.event.event_time)
    assert form.history.is_primary


def test_exact_redelivery_is_a_replay_with_its_own_event_id():
    r = resolver()
    first, again, third = (r.decide(lead("m1")) for _ in range(3))
    assert (first.outcome, again.outcome, third.outcome) == (NEW, REPLAY, REPLAY)
    assert len({first.event.event_id, again.event.event_id, third.event.event_id}) == 3
    assert again.event.lead_id == first.event.lead_id and not again.versions


def test_a_provider_id_seen_again_is_a_replay():
    ds = decide_in_order(resolver(), [lead("m1", external_id="L1"), lead("m2", external_id="L1", event_s=5)])
    assert outcomes(ds) == [("m1", NEW), ("m2", REPLAY)]


def test_a_retried_attempt_gets_the_same_outputs_and_a_committed_one_a_replay():
    store = MemoryStore()
    r = resolver(store)
    r.begin("job1", 0)
    lost = r.decide(lead("m1", phone=P1, email=E1))  # this attempt's outputs are thrown away
    r.begin("job1", 0)  # the retry: Beam committed nothing
    again = r.decide(lead("m1", phone=P1, email=E1))
    assert (again.outcome, again.event.event_id, again.event.lead_id) == (NEW, lost.event.event_id, lost.event.lead_id)
    assert again.lead is not None and again.redecided
    assert [v.version_id for v in again.versions] == [v.version_id for v in lost.versions]
    r.begin("job1", 1)  # committed now: the same unit again is a redelivery
    assert r.decide(lead("m1", phone=P1, email=E1)).outcome == REPLAY


def test_a_new_job_on_the_same_store_knows_every_person(tmp_path):
    path = str(tmp_path / "identity.sqlite")
    first = resolver(SqliteStore(path))
    a = first.decide(lead("m1", phone=P1, email=E1, source="meta"))
    first.store.close()
    second = resolver(open_store(f"sqlite:{path}"))  # a restarted job: a new epoch, a cold cache
    b = second.decide(lead("m2", email=E1, source="web", event_s=60))
    assert (b.outcome, b.event.lead_id) == (CROSS_SOURCE, a.event.lead_id)


def test_a_shared_number_stops_linking_strangers():
    r = resolver(max_companions=2)
    switchboard = "+14155550199"
    mails = [f"caller{i}@example.org" for i in range(5)]
    ds = [r.decide(lead(f"m{i}", phone=switchboard, email=m, source="call", event_s=i)) for i, m in enumerate(mails)]
    guards = [g for d in ds for g in d.guards]
    assert len(guards) == 1 and guards[0].kind == "phone" and guards[0].companions == 3
    assert switchboard not in repr(guards[0])
    # the first three were linked before the guard tripped (documented); after it, each caller is their own person
    assert len({d.event.lead_id for d in ds[3:]}) == 2 and ds[3].event.lead_id != ds[0].event.lead_id
    # a later event with only the shared number is a lead, linked to no one
    alone = r.decide(lead("m9", phone=switchboard, source="call", event_s=100))
    assert alone.outcome == NEW and alone.shared == 1


def test_companions_outside_the_window_do_not_count():
    r = resolver(max_companions=1, fan_in_window_days=1)
    day = 86400
    ds = [r.decide(lead(f"m{i}", phone=P1, email=f"p{i}@example.org", event_s=i * 2 * day)) for i in range(4)]
    assert not any(d.guards for d in ds)


def test_a_forgotten_person_is_new_again():
    r = resolver(ttl_days=1)
    a = r.decide(lead("m1", phone=P1))
    b = r.decide(lead("m2", phone=P1, event_s=3 * 86400))
    assert b.outcome == NEW and b.event.lead_id != a.event.lead_id


@pytest.mark.parametrize("email,reason", [("none@none.com", "placeholder"), ("noreply@shop.example", "role_address"),
                                          ("NoReply@Shop.Example", "role_address")])
def test_the_bundled_blocklist(email, reason):
    assert Blocklist.load().reason("email", email.lower()) == reason


def test_the_blocklist_file_is_checked(tmp_path):
    (tmp_path / "identity_blocklist.csv").write_text("kind,value,reason\nfax,+1,x\n")
    with pytest.raises(Exception, match=r"identity_blocklist\.csv:2"):
        Blocklist.load(str(tmp_path))


def test_no_raw_identifier_in_the_store():
    store = MemoryStore()
    decide_in_order(resolver(store), [lead("m1", phone=P1, email=E1), lead("m2", phone=P2, email=E1)])
    blob = b"".join(store.rows.values()) + "".join(store.rows).encode()
    assert P1.encode() not in blob and E1.encode() not in blob and b"example.org" not in blob


# --- any arrival order ends the same --------------------------------------------------------------------------

CONTACTS = [(P1, None), (None, E1), (P1, E1), (P2, E1), (P2, None), (P3, None), (None, E2), (P3, E2)]
SOURCES = ["meta", "web", "call", "api"]


@st.composite
def events_and_orders(draw):
    n = draw(st.integers(2, 8))
    events = [lead(f"m{i}", phone=p, email=e, source=draw(st.sampled_from(SOURCES)),
                   event_s=draw(st.integers(0, 50)), publish_s=100 + i)
              for i, (p, e) in enumerate(draw(st.lists(st.sampled_from(CONTACTS), min_size=n, max_size=n)))]
    order = draw(st.permutations(events))
    return events, list(order)


def summary(decisions):
    """Persons (as sets of units), the primary source of each, and the number of live leads."""
    groups = persons(decisions)
    by_unit = {d.event.message_id: d for d in decisions}
    primaries = []
    for g in groups:
        earliest = min((by_unit[u] for u in g),
                       key=lambda d: (d.event.event_time, d.event.publish_time, d.event.message_id))
        primaries.append(earliest.event.source_id)
    return groups, primaries


def primary_from_versions(decisions):
    """The primary source each live person ends with, folded from the versions as leads_current does."""
    merged = {m.merged_lead_id for d in decisions for m in d.merges}
    versions = [v for d in decisions for v in d.versions]
    return sorted(primary_of(d.lead, versions)[0] for d in decisions if d.lead and d.lead.lead_id not in merged)


@settings(max_examples=150, deadline=None)
@given(events_and_orders())
def test_any_arrival_order_ends_in_the_same_persons_and_primary_sources(case):
    events, order = case
    in_time = decide_in_order(resolver(), sorted(events, key=lambda e: (e.event_time, e.publish_time, e.unit_id)))
    arrived = decide_in_order(resolver(), order)
    assert summary(arrived) == summary(in_time)
    assert primary_from_versions(arrived) == primary_from_versions(in_time) == sorted(summary(in_time)[1])
    assert sum(1 for d in arrived if d.outcome == NEW) - sum(len(d.merges) for d in arrived if d.merges) >= 0


def test_every_pairwise_order_of_a_merge_case():
    events = [lead("m1", phone=P1, source="call", event_s=0), lead("m2", email=E1, source="web", event_s=10),
              lead("m3", phone=P1, email=E1, source="meta", event_s=20)]
    results = {tuple(map(frozenset, summary(decide_in_order(resolver(), order))[0]))
               for order in itertools.permutations(events)}
    assert results == {(frozenset({"m1", "m2", "m3"}),)}


def test_event_ids_are_deterministic():
    assert event_id_for("m1") == event_id_for("m1") != event_id_for("m1", 1)
    a = decide_in_order(resolver(), [lead("m1")])[0]
    b = decide_in_order(resolver(), [lead("m1")])[0]
    assert a.event.lead_id == b.event.lead_id and timedelta(0) == a.event.event_time - b.event.event_time


# -- seeding a store from the tables (identity-seed) -------------------------------------------------------------


def _event_row(lead_id, n, phone=None, email=None, minutes=0):
    at = T0 + timedelta(minutes=minutes)
    return {"event_id": f"e{n}", "message_id": f"m{n}", "lead_id": lead_id, "outcome": "new", "provider": "api",
            "source_id": "meta_form_1", "external_id": None, "event_time": at, "publish_time": at,
            "phone_e164": phone, "email": email}


def test_the_old_job_s_phone_and_e_mail_leads_are_known_and_merge_at_the_next_event_that_links_them():
    # the old job keyed a person by phone, else e-mail: lead A (phone p, e-mail x) and lead B (e-mail x, later),
    # and lead C (phone q)
    p, q, x = "+14155550101", "+14155550102", "x@example.com"
    rows = seed_rows([_event_row("A", 1, phone=p, email=x), _event_row("B", 2, email=x, minutes=5),
                      _event_row("C", 3, phone=q, minutes=9)], [], key=b"test")
    r = resolver(MemoryStore())
    r.store.put(rows)
    assert r.decide(lead("n1", email=x, event_s=7200)).event.lead_id == "A"  # x belongs to A, seen first
    assert r.decide(lead("n2", phone=p, event_s=7300)).event.lead_id == "A"
    linked = r.decide(lead("n3", phone=q, email=x, event_s=7400))
    assert linked.event.lead_id == "A" and [(m.merged_lead_id, m.into_lead_id) for m in linked.merges] == [("C", "A")]


def test_seeded_merges_count_under_the_survivor_and_a_switchboard_number_is_shared_from_the_start():
    board = "+14155550199"
    events = [_event_row("A", 1, phone="+14155550101"), _event_row("B", 2, email="b@example.com", minutes=1)]
    events += [_event_row(f"S{i}", 10 + i, phone=board, email=f"caller{i}@example.com", minutes=10 + i)
               for i in range(6)]
    merges = [{"merged_lead_id": "B", "into_lead_id": "A", "merged_at": T0, "processed_at": None}]
    rows = seed_rows(events, merges, IdentityConfig(max_companions=3), key=b"test")
    assert rows["p:B"]["into"] == "A" and rows["p:A"]["absorbed"] == ["B"]
    r = resolver(MemoryStore(), max_companions=3)
    r.store.put(rows)
    assert r.decide(lead("n1", email="b@example.com", event_s=7200)).event.lead_id == "A"
    decision = r.decide(lead("n2", phone=board, email="someone.new@example.com", event_s=7300))
    assert decision.outcome == "new" and decision.shared == 1  # the number links no one
