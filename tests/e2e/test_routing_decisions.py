"""The ``routing_decisions`` view in bqemulator over rows the dispatcher itself wrote: each offer's chosen agent,
the candidates and every other agent's skip reason come back from one row, with a count per reason."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from schemas import bigquery as bq
from schemas.derive import to_row
from tests.helpers.bigquery import PROJECT, insert, new_dataset, query
from tests.helpers.desk import RULES, T, ev, lead, world
from transforms.routing import TeamState, dispatch_lead, on_agent_event

pytestmark = pytest.mark.e2e


def test_routing_decisions_answers_why_from_one_row(bigquery_emulator):
    ref = world({"busy": {"max_open": "1"}, "away": {}, "off": {"available": "false"},
                 "night": {"work_start": "20:00", "work_end": "23:00"}, "free": {}})
    state = TeamState(status={"away": "away"})
    outs = dispatch_lead(ref, state, lead(ref, "L0"), T, T, RULES)  # busy (first in file order)
    outs += dispatch_lead(ref, state, lead(ref, "L1"), T, T, RULES)  # free: busy is at cap
    outs += dispatch_lead(ref, state, lead(ref, "L2"), T, T, RULES)  # nobody: queued
    outs += on_agent_event(ref, state, "desk-a", ev("b", "away", "online", T + timedelta(seconds=30)), T, RULES)
    rows = [r for k, r in outs if k == "assignment"]
    assert [r.action for r in rows] == ["assigned", "assigned", "queued", "dequeued", "assigned"]
    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    insert(client, dataset, "lead_assignments", [to_row(r) for r in rows] + [to_row(rows[1])])  # a repeat insert
    got = query(client, dataset, "routing_decisions", "action_at, lead_id")
    assert [(g["lead_id"], g["action"], g["chosen_agent"]) for g in got] == [
        ("L0", "assigned", "busy"), ("L1", "assigned", "free"), ("L2", "queued", None), ("L2", "assigned", "away")]
    l1 = got[1]
    assert l1["candidates"] == ["free"] and l1["candidate_count"] == 1 and l1["skipped_count"] == 4
    assert {s["agent_id"]: s["reason"] for s in json.loads(l1["skipped"])} == {
        "busy": "at_cap", "away": "away", "off": "unavailable", "night": "off_shift"}
    counts = {k: l1[f"skipped_{k}"] for k in ("unavailable", "away", "offline", "already_offered", "off_shift",
                                              "at_cap")}
    assert counts == {"unavailable": 1, "away": 1, "offline": 0, "already_offered": 0, "off_shift": 1, "at_cap": 1}
    queued = got[2]
    assert queued["candidates"] == [] and queued["skipped_at_cap"] == 2 and queued["reason"] == "no_available_agent"
    assert got[3]["since_lead_s"] == pytest.approx(30.0)
