"""The desk rules of the dispatcher (pure functions): the waiting queue, caps, the audit of every offer, overflow,
shifts, missed offers and fair returns, on a small reference world built in the test."""

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.desk import AGENT_ROW, RULES, SLA, T, ev, lead, world
from tests.helpers.leads import lead_record
from tests.unit.test_routing import bundled_dir
from transforms.reference import ReferenceDataError, build_reference, load_reference
from transforms.routing import (
    PersonEvent,
    Rules,
    TeamState,
    advance,
    dispatch_lead,
    next_wake,
    on_agent_event,
    on_person_event,
    pick_agent,
)


def skips(decision: str) -> dict[str, str]:
    return {s["agent_id"]: s["reason"] for s in json.loads(decision)["skipped"]}


def steps(outs, *actions):
    return [(r.action, r.lead_id, r.agent_id, r.reason) for k, r in outs
            if k == "assignment" and (not actions or r.action in actions)]


def test_a_lead_waits_and_is_offered_the_moment_an_agent_comes_online():
    ref = world({"a1": {}, "a2": {}})
    state = TeamState(status={"a1": "away", "a2": "offline"})
    outs = dispatch_lead(ref, state, lead(ref, "L1"), T, T, RULES)
    assert [k for k, _ in outs] == ["lead", "assignment"]
    row, queued = outs[0][1], outs[1][1]
    assert (row.routing_status, row.routing_reason, row.agent_id) == ("queued", "no_available_agent", None)
    assert (queued.action, queued.reason) == ("queued", "no_available_agent")
    assert skips(queued.decision) == {"a1": "away", "a2": "offline"}
    assert list(state.queue) == ["L1"] and not state.pending
    back = T + timedelta(seconds=40)
    outs = on_agent_event(ref, state, "desk-a", ev("o1", "a2", "online", back), T, RULES)
    assert steps(outs) == [("dequeued", "L1", None, "agent_free"), ("assigned", "L1", "a2", None)]
    offer = outs[-1][1]
    assert offer.action_at == back and offer.sla_deadline == back + SLA  # the SLA clock starts at the offer
    assert json.loads(steps_rows(outs, "dequeued")[0].decision) == {"waited_seconds": 40.0}
    assert [r.agent_id for k, r in outs if k == "delivery"] == ["a2"] and not state.queue


def test_the_queue_is_offered_by_tier_then_oldest_first():
    ref = world({"a1": {"max_open": "1"}})
    state = TeamState()
    dispatch_lead(ref, state, lead(ref, "L0"), T, T, RULES)  # a1 now holds one open lead: at cap
    order = [("C1", "cold"), ("W1", "warm"), ("H1", "hot"), ("C2", "cold"), ("H2", "hot"), ("N1", None)]
    for i, (lid, tier) in enumerate(order, 1):
        outs = dispatch_lead(ref, state, lead(ref, lid, T + timedelta(seconds=i), tier), T + timedelta(seconds=i),
                             T, RULES)
        assert skips(steps_rows(outs, "queued")[0].decision) == {"a1": "at_cap"}
    offered, current, t = [], "L0", T + timedelta(seconds=10)
    for i in range(len(order)):
        on_agent_event(ref, state, "desk-a", ev(f"acc{i}", "a1", "accepted", t, current), T, RULES)
        t += timedelta(seconds=1)
        outs = on_agent_event(ref, state, "desk-a", ev(f"cl{i}", "a1", "closed", t, current), T, RULES)
        assert steps(outs, "closed") == [("closed", current, "a1", None)]
        current = steps(outs, "assigned")[0][1]
        offered.append(current)
    assert offered == ["H1", "H2", "W1", "C1", "C2", "N1"]


def steps_rows(outs, action):
    return [r for k, r in outs if k == "assignment" and r.action == action]


def test_manual_review_after_max_queue_seconds_or_when_the_team_has_no_agents():
    ref = world({"a1": {}})
    rules = Rules(SLA, max_queue=timedelta(seconds=900))
    state = TeamState(status={"a1": "away"})
    dispatch_lead(ref, state, lead(ref, "L1"), T, T, rules)
    assert next_wake(ref, state, rules) == T + timedelta(seconds=900)
    assert advance(ref, state, T + timedelta(seconds=899), T, rules) == []
    outs = advance(ref, state, T + timedelta(seconds=1000), T, rules)
    assert steps(outs) == [("dequeued", "L1", None, "queue_timeout"), ("manual_review", "L1", None, "queue_timeout")]
    assert steps_rows(outs, "manual_review")[0].action_at == T + timedelta(seconds=900)
    assert [k for k, _ in outs].count("manual_review") == 1 and "lead" not in [k for k, _ in outs]
    empty = world({"a1": {"available": "false"}})
    outs = dispatch_lead(empty, TeamState(), lead(empty, "L2"), T, T, rules)
    assert [k for k, _ in outs] == ["lead", "manual_review", "assignment"]
    assert outs[0][1].routing_reason == "no_agents_in_team"
    assert skips(outs[2][1].decision) == {"a1": "unavailable"}


def test_no_agent_ever_holds_more_than_max_open_open_leads():
    ref = world({"a1": {"max_open": "2", "capacity": "3"}, "a2": {"max_open": "1"}, "a3": {"max_open": "3"}})
    caps = {"a1": 2, "a2": 1, "a3": 3}
    rng = random.Random(11)
    state, t, n = TeamState(), T, 0
    opened = {}  # lead -> agent (offered or accepted, not closed): rebuilt from the output rows alone
    at_cap = 0
    for i in range(1500):
        t += timedelta(seconds=rng.uniform(1, 40))
        roll = rng.random()
        if roll < 0.35:
            n += 1
            outs = dispatch_lead(ref, state, lead(ref, f"L{n}", t, rng.choice(["hot", "warm", "cold"])), t, T, RULES)
        else:
            offers = [(lid, p.agent_id) for lid, p in state.pending.items()]
            taken = list(state.accepted.items())
            if roll < 0.65 and offers:
                lid, agent = rng.choice(offers)
                kind = "accepted" if rng.random() < 0.8 else "rejected"
            elif roll < 0.9 and taken:
                lid, (agent, *_) = rng.choice(taken)
                kind = "closed"
            else:
                lid, agent, kind = None, rng.choice(list(caps)), rng.choice(["online", "away", "online"])
            outs = on_agent_event(ref, state, "desk-a", ev(f"e{i}", agent, kind, t, lid), T, RULES)
        for k, r in outs:
            if k != "assignment":
                continue
            if r.action in ("assigned", "reassigned"):
                opened[r.lead_id] = r.agent_id
            elif r.action in ("rejected", "expired", "closed"):
                opened.pop(r.lead_id, None)
            held = [a for a in opened.values() if a == r.agent_id]
            assert len(held) <= caps.get(r.agent_id, 0) or r.agent_id is None, (i, r)
        assert all(state.load()[a] <= c for a, c in caps.items())
        at_cap += sum(1 for k, r in outs if k == "assignment" and r.decision and "at_cap" in r.decision)
    assert n > 400 and at_cap > 100  # the caps were reached often, and held


def test_every_offer_names_the_candidates_and_why_each_other_agent_was_skipped():
    ref = world({"busy": {"max_open": "1"}, "away": {}, "off": {"available": "false"},
                 "night": {"work_start": "20:00", "work_end": "23:00"}, "free": {}, "other": {}})
    state = TeamState(status={"away": "away"})
    dispatch_lead(ref, state, lead(ref, "L0"), T, T, RULES)  # smooth WRR: 'busy' first (file order)
    assert state.pending["L0"].agent_id == "busy"
    outs = dispatch_lead(ref, state, lead(ref, "L1"), T, T, RULES)
    offer = steps_rows(outs, "assigned")[0]
    decision = json.loads(offer.decision)
    assert decision["chosen"] == offer.agent_id and decision["candidates"] == ["free", "other"]
    assert skips(offer.decision) == {"busy": "at_cap", "away": "away", "off": "unavailable", "night": "off_shift"}
    expired = advance(ref, state, T + SLA, T, Rules(SLA, max_missed=5))  # L0 re-offered: 'busy' stays online
    assert skips(steps_rows(expired, "reassigned")[0].decision)["busy"] == "already_offered"


def test_a_waiting_lead_moves_to_the_overflow_team_after_overflow_seconds():
    ref = world({"a1": {}}, overflow="desk-b")
    rows = [(f"agents.csv:{i}", {**AGENT_ROW, "agent_id": a, "team_id": t, "capacity": "1"})
            for i, (a, t) in enumerate([("a1", "desk-a"), ("b1", "desk-b")], 2)]
    ref = build_reference(ref.sources, [(w, {"territory_id": r.territory_id, "country": r.country,
                                             "match_type": r.match_type, "match_values": r.value})
                                        for w, r in zip(["t:2", "t:3"], ref.rules, strict=True)],
                          [("teams.csv:2", dict(team_id="desk-a", territory_id="us-east", overflow_team="desk-b")),
                           ("teams.csv:3", dict(team_id="desk-b", territory_id="us-other"))], rows)
    assert ref.desk("desk-a") == ref.desk("desk-b") == "desk-a"
    rules = Rules(SLA, max_queue=timedelta(seconds=900), overflow=timedelta(seconds=300))
    state = TeamState(status={"a1": "away"})
    dispatch_lead(ref, state, lead(ref, "L1"), T, T, rules)
    assert next_wake(ref, state, rules) == T + timedelta(seconds=300)
    outs = advance(ref, state, T + timedelta(seconds=301), T, rules)
    assert steps(outs) == [("overflowed", "L1", None, "overflow_to:desk-b"), ("dequeued", "L1", None, "agent_free"),
                           ("assigned", "L1", "b1", None)]
    moved = steps_rows(outs, "assigned")[0]
    assert moved.team == "desk-b" and moved.action_at == T + timedelta(seconds=300)
    assert json.loads(steps_rows(outs, "overflowed")[0].decision) == {"from": "desk-a", "to": "desk-b",
                                                                      "waited_seconds": 300.0}


def test_a_lead_for_a_team_off_shift_waits_for_the_shift_and_its_clocks_start_there():
    ref = world({"day": {"work_days": "Mon-Fri", "work_start": "09:00", "work_end": "17:00"}})
    night = datetime(2026, 11, 18, 3, 0, tzinfo=UTC)  # Tuesday 22:00 in New York
    shift = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)  # Wednesday 09:00 in New York
    rules = Rules(SLA, max_queue=timedelta(seconds=900))
    state = TeamState()
    outs = dispatch_lead(ref, state, lead(ref, "L1", night), night, T, rules)
    assert steps(outs) == [("queued", "L1", None, "off_shift")]
    assert next_wake(ref, state, rules) == shift  # not night + 900 s: the wait counts from the shift
    outs = advance(ref, state, shift + timedelta(seconds=60), T, rules)
    offer = steps_rows(outs, "assigned")[0]
    assert (offer.agent_id, offer.action_at, offer.sla_deadline) == ("day", shift, shift + SLA)
    assert steps(outs, "manual_review") == []


def test_an_agent_who_lets_max_missed_offers_expire_in_a_row_goes_offline_until_online():
    ref = world({"a1": {"capacity": "5", "max_open": "5"}, "a2": {"max_open": "5"}})
    rules = Rules(SLA, max_missed=2)
    state = TeamState()
    dispatch_lead(ref, state, lead(ref, "L1"), T, T, rules)  # a1 (weight 5)
    outs = advance(ref, state, T + SLA, T, rules)  # a1 misses one: still online; L1 to a2
    assert [k for k, _ in outs if k == "agent_status"] == [] and state.missed == {"a1": 1}
    accept = on_agent_event(ref, state, "desk-a", ev("x", "a2", "accepted", T + SLA, "L1"), T, rules)
    assert steps(accept) == [("accepted", "L1", "a2", None)]
    t = T + SLA + timedelta(seconds=1)
    dispatch_lead(ref, state, lead(ref, "L2", t), t, T, rules)
    assert state.pending["L2"].agent_id == "a1"
    outs = advance(ref, state, t + SLA, T, rules)
    status = [(r.agent_id, r.status, r.reason) for k, r in outs if k == "agent_status"]
    assert status == [("a1", "offline", "missed_offers")]
    t2 = t + SLA + timedelta(seconds=5)
    dispatch_lead(ref, state, lead(ref, "L3", t2), t2, T, rules)
    assert state.pending["L3"].agent_id == "a2"  # a1 stays offline
    on_agent_event(ref, state, "desk-a", ev("on", "a1", "online", t2), T, rules)
    assert "a1" not in state.status and "a1" not in state.missed
    # an answer breaks the run: one miss, an acceptance, one miss again stays online
    rules1 = Rules(SLA, max_missed=2)
    s2 = TeamState(missed={"a1": 1})
    dispatch_lead(ref, s2, lead(ref, "M1"), T, T, rules1)
    on_agent_event(ref, s2, "desk-a", ev("y", "a1", "rejected", T, "M1"), T, rules1)
    assert "a1" not in s2.missed


def test_fair_returns_an_agent_back_from_away_starts_at_the_teams_position():
    ref = world({"a1": {}, "a2": {}, "a3": {}})
    state = TeamState()
    agents = list(ref.agents["desk-a"])
    for _ in range(6):
        pick_agent(state, agents)
    state.current["a3"] = 50.0  # credit it would carry back (e.g. accumulated while it could not take leads)
    state.status["a3"] = "away"
    on_agent_event(ref, state, "desk-a", ev("back", "a3", "online", T), T, RULES)
    assert state.current["a3"] == pytest.approx((state.current["a1"] + state.current["a2"]) / 2)
    picks = [pick_agent(state, agents).agent_id for _ in range(6)]
    assert picks.count("a3") == 2  # its share, not a run of six


def test_team_state_pickled_before_the_queue_existed_still_loads():
    import pickle

    old = TeamState()
    for name in ("queue", "accepted", "missed", "time"):
        del old.__dict__[name]
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.queue == {} and loaded.accepted == {} and loaded.time is None


@pytest.mark.parametrize("table, old, new, message", [
    ("teams.csv", "NYC priority desk,nyc-sales", "NYC priority desk,nyc-nowhere", "overflow_team 'nyc-nowhere' is not"),
    ("teams.csv", "NYC sales,", "NYC sales,nyc-priority", "overflow teams form a cycle"),
    ("teams.csv", "NYC priority desk,nyc-sales", "NYC priority desk,nyc-priority", "cannot overflow to itself"),
    ("agents.csv", "true,12\n", "true,-1\n", "max_open must be 0 or more"),
])
def test_bad_overflow_and_cap_rows_fail_at_load_with_file_and_line(tmp_path, table, old, new, message):
    d = bundled_dir(tmp_path)
    path = d / table
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ReferenceDataError, match=message) as e:
        load_reference(str(d))
    assert f"{path}:" in str(e.value)
    line = 1 + text[: text.index(old)].count("\n")
    cycle_lines = {2, 3}  # a cycle names the row of one of its teams (nyc-priority -> nyc-sales -> nyc-priority)
    assert (f"{path}:{line}:" in str(e.value)) or ("cycle" in message and any(
        f"{path}:{n}:" in str(e.value) for n in cycle_lines))


def _accepted(ref, state, lead_id, agent, at=T):
    dispatch_lead(ref, state, lead(ref, lead_id, at), at, T, RULES)
    assert state.pending[lead_id].agent_id == agent
    on_agent_event(ref, state, "desk-a", ev(f"acc-{lead_id}", agent, "accepted", at, lead_id), T, RULES)


def test_the_owner_first_a_later_event_goes_to_the_agent_who_accepted_the_person():
    ref = world({"a1": {"max_open": "1"}, "a2": {}})
    state = TeamState()
    _accepted(ref, state, "L1", "a1")
    later = T + timedelta(minutes=5)
    update = lead_record("L1", first_seen_at=later, primary_source="zillow")
    outs = on_person_event(ref, state, PersonEvent("ev-2", "L1", later, update), later, T, RULES)
    assert [(k, r.agent_id) for k, r in outs] == [("delivery", "a1"), ("assignment", "a1")]
    delivery, row = outs[0][1], outs[1][1]
    assert delivery.routing_status == "update" and delivery.team == "desk-a"  # not a new offer: a1 is at cap
    assert (row.action, row.reason, row.agent_event_id) == ("owner_update", "owner_first", "ev-2")
    assert not state.pending and state.accepted["L1"][0] == "a1"
    assert on_person_event(ref, state, PersonEvent("ev-2", "L1", later, update), later, T, RULES) == []  # a repeat
    # a desk that does not hold the lead does nothing
    assert on_person_event(ref, TeamState(), PersonEvent("ev-3", "L1", later, update), later, T, RULES) == []


def test_the_owner_away_sends_the_person_through_the_normal_rules():
    ref = world({"a1": {}, "a2": {}})
    state = TeamState()
    _accepted(ref, state, "L1", "a1")
    on_agent_event(ref, state, "desk-a", ev("away", "a1", "away", T), T, RULES)
    later = T + timedelta(minutes=5)
    outs = on_person_event(ref, state, PersonEvent("ev-2", "L1", later, lead_record("L1")), later, T, RULES)
    assert steps(outs) == [("owner_unavailable", "L1", "a1", "away"), ("reassigned", "L1", "a2", "owner_unavailable")]
    assert state.pending["L1"].agent_id == "a2" and "L1" not in state.accepted
    assert [r.routing_status for k, r in outs if k == "delivery"] == [None]  # an offer, not an update


def test_after_a_merge_the_survivor_goes_to_the_owner_of_the_absorbed_lead():
    ref = world({"a1": {}, "a2": {}})
    state = TeamState()
    _accepted(ref, state, "L1", "a1")
    later = T + timedelta(minutes=1)
    assert on_person_event(ref, state, PersonEvent("merge:L1", "L1", later, merged_into="L0"), later, T, RULES) == []
    outs = on_person_event(ref, state, PersonEvent("ev-9", "L0", later, lead_record("L0")), later, T, RULES)
    assert steps(outs) == [("owner_update", "L0", "a1", "owner_first")]
