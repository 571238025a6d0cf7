"""``leadflow trace`` on the sample run in the BigQuery emulator: a person who came through three providers, found by
phone, e-mail, lead id and message id, with every event, source, change and routing step of theirs in time order,
and no phone or e-mail in the logs or the output."""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import pytest

from pipelines.ops import trace as tr
from tests.helpers.bigquery import PROJECT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def three_provider_person(sample_landed):
    providers = defaultdict(set)
    for e in sample_landed.tables["lead_events"]:
        providers[e["lead_id"]].add(e["provider"])
    lead_id = max(providers, key=lambda k: (len(providers[k]), k))
    assert len(providers[lead_id]) >= 3, "the sample has a person from three providers"
    (lead,) = [r for r in sample_landed.tables["leads"] if r["lead_id"] == lead_id]
    assert lead["phone_e164"] and lead["email"], "the chosen person has both a phone and an e-mail"
    return lead, providers[lead_id]


def test_the_journey_of_a_person_from_three_providers(sample_landed, three_provider_person, caplog):
    run, (lead, providers) = sample_landed, three_provider_person
    lead_id = lead["lead_id"]
    caplog.set_level(logging.INFO, logger="leadflow.trace")
    root, leads, steps = tr.trace(run.client, PROJECT, run.dataset, "phone", lead["phone_e164"])
    assert root == lead_id and leads == [lead_id]  # the sample merges no one
    events = [e for e in run.tables["lead_events"] if e["lead_id"] == lead_id]
    by_kind = defaultdict(list)
    for s in steps:
        by_kind[s.kind].append(s)
    assert sorted(s.ids["event_id"] for s in by_kind["event"]) == sorted(e["event_id"] for e in events)
    assert {s.what.split(" via ")[1].split(" ")[0] for s in by_kind["event"]} == providers
    assert {s.what.split(" ")[1] for s in by_kind["source"]} == {
        h["source_id"] for h in run.tables["lead_source_history"] if h["lead_id"] == lead_id}
    assert sorted(s.ids["assignment_event_id"] for s in by_kind["routing"]) == sorted(
        a["assignment_event_id"] for a in run.tables["lead_assignments"] if a["lead_id"] == lead_id)
    assert sorted(s.ids["version_id"] for s in by_kind["change"]) == sorted(
        v["version_id"] for v in run.tables["lead_versions"]
        if v["lead_id"] == lead_id and v["change"] not in tr.ROUTING_CHANGES)
    assert by_kind["routing"] and by_kind["routing"][0].what.startswith("assigned, attempt 1")
    # each offer carries its routing audit: the candidates, the agent chosen against its cap, the skips
    first_offer = next(a for a in run.tables["lead_assignments"]
                       if a["lead_id"] == lead_id and a["action"] == "assigned")
    decision = json.loads(first_offer["decision"])
    assert f"chose {decision['chosen']} ({decision['open_before']} open of {decision['max_open']})" in (
        by_kind["routing"][0].what)
    assert f"{len(decision['candidates'])} candidates" in by_kind["routing"][0].what
    assert any(s.what.startswith("scored ") and " by model" in s.what for s in by_kind["change"])
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert steps[0].kind == "event" and "new via" in steps[0].what  # the first sighting opens the journey
    # the same person by e-mail, lead id and the message id of the person's last event
    for kind, value in (("email", lead["email"]), ("lead_id", lead_id),
                        ("message_id", max(events, key=lambda e: e["event_time"])["message_id"].split("#")[0])):
        assert tr.trace(run.client, PROJECT, run.dataset, kind, value) == (root, leads, steps), kind
    text = caplog.text
    assert lead["phone_e164"] not in text and lead["email"] not in text and lead["phone_e164"][1:] not in text
    assert "phone hash " in text and "email hash " in text


def test_the_command_prints_the_journey_without_personal_data(sample_landed, three_provider_person, capsys, caplog):
    run, (lead, providers) = sample_landed, three_provider_person
    assert tr.main(["--bq_dataset", run.bq_dataset, "--phone", lead["phone_e164"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"person {lead['lead_id']}\n") and all(f" via {p} " in out for p in providers)
    for pii in (lead["phone_e164"], lead["email"], lead["full_name"]):
        assert not pii or (pii not in out and pii not in caplog.text)
    assert tr.main(["--bq_dataset", run.bq_dataset, "--email", "nobody@example.com"]) == 1
    err = capsys.readouterr().err
    assert "no lead matches email hash " in err and "nobody@example.com" not in err


def test_a_message_that_became_a_dead_letter_is_traced_to_it(sample_landed, capsys):
    run = sample_landed
    dead = next(d for d in run.tables["dead_letters"] if d["stage"] == "normalize")
    root, leads, steps = tr.trace(run.client, PROJECT, run.dataset, "message_id", dead["message_id"])
    assert (root, leads) == ("", []) and [(s.kind, s.ids["message_id"]) for s in steps] == [
        ("dead_letter", dead["message_id"])]
    assert f"dead letter at normalize: {dead['error_type']}" in steps[0].what
