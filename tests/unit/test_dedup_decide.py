"""The pure dedup decision: outcomes, primary source, replays, expiry, deterministic ids."""

from datetime import timedelta

from tests.helpers.leads import lead
from transforms.dedup import (
    CROSS_SOURCE,
    DUPLICATE_SAME_SOURCE,
    MAX_REMEMBERED_IDS,
    NEW,
    REPLAY,
    decide,
    decide_all,
)


def outcomes(decisions):
    return [(d.event.message_id, d.outcome) for d in decisions]


def test_outcomes_for_one_person():
    _, ds = decide_all(None, [
        lead("m1", source="meta_lead_ads", event_s=0, external_id="L1"),
        lead("m2", source="meta_lead_ads", event_s=10, external_id="L2"),
        lead("m3", source="twilio_sms", event_s=20),
        lead("m4", source="knowlarity_call", event_s=30, external_id="L1"),  # other provider, same id: no replay
        lead("m5", source="meta_lead_ads", event_s=40, external_id="L1"),  # same provider id again
    ])
    assert outcomes(ds) == [("m1", NEW), ("m2", DUPLICATE_SAME_SOURCE), ("m3", CROSS_SOURCE),
                            ("m4", CROSS_SOURCE), ("m5", REPLAY)]
    assert len({d.event.lead_id for d in ds}) == 1
    assert [d.lead is not None for d in ds] == [True, False, False, False, False]
    assert [(d.history.source_id, d.history.is_primary) for d in ds if d.history] == [
        ("meta_lead_ads", True), ("twilio_sms", False), ("knowlarity_call", False)]


def test_primary_is_the_earliest_event_time_not_the_first_arrival():
    _, ds = decide_all(None, [
        lead("late-arrival", source="twilio_sms", event_s=100, publish_s=100),
        lead("early-event", source="google_ads_lead_form", event_s=5, publish_s=150),
    ])
    assert outcomes(ds) == [("early-event", NEW), ("late-arrival", CROSS_SOURCE)]
    assert ds[0].lead.primary_source == "google_ads_lead_form"


def test_exact_redelivery_is_a_replay_with_its_own_event_id():
    state, (first,) = decide_all(None, [lead("m1")])
    state, (again,) = decide_all(state, [lead("m1")])
    state, (third,) = decide_all(state, [lead("m1")])
    assert (first.outcome, again.outcome, third.outcome) == (NEW, REPLAY, REPLAY)
    assert len({first.event.event_id, again.event.event_id, third.event.event_id}) == 3
    assert again.lead is None and again.history is None


def test_ids_are_deterministic_across_runs():
    _, a = decide_all(None, [lead("m1"), lead("m2", source="api")])
    _, b = decide_all(None, [lead("m2", source="api"), lead("m1")])
    assert [(d.event.event_id, d.event.lead_id) for d in a] == [(d.event.event_id, d.event.lead_id) for d in b]


def test_expiry_makes_the_person_new_again():
    ttl = timedelta(days=90)
    day = 86400
    _, ds = decide_all(None, [lead("m1", event_s=0), lead("m2", event_s=80 * day),
                              lead("m3", event_s=171 * day)], ttl)
    assert outcomes(ds) == [("m1", NEW), ("m2", DUPLICATE_SAME_SOURCE), ("m3", NEW)]
    assert ds[0].event.lead_id != ds[2].event.lead_id


def test_remembered_ids_are_bounded():
    state, _ = decide(None, lead("m0", external_id="x0"))
    for i in range(1, MAX_REMEMBERED_IDS + 50):
        state, _ = decide(state, lead(f"m{i}", external_id=f"x{i}", event_s=i))
    assert len(state.unit_ids) == MAX_REMEMBERED_IDS
    assert len(state.external_ids) == MAX_REMEMBERED_IDS
