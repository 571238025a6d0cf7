"""Reliability under faults, on one local stack and one streaming pipeline (DirectRunner subprocess).

The scenarios run in file order against the same running pipeline; each publishes its own batch (Pub/Sub message
ids recorded), waits until every published unit is accounted for in BigQuery, and then checks the
one-row-per-unit invariant over everything published so far by counting both sides:

    published units == lead_events rows + dead_letters rows, every unit id once, every event id once,
    leads rows == distinct people published (one lead per person), every lead id once.

1. poison messages (a 9.9 MB payload, 10,000-deep JSON, invalid UTF-8, hostile HTML e-mails) then ordinary ones:
   dead letters for the poison, the ordinary ones flow on;
2. the scorer SIGKILLed mid-stream: leads scored by the fallback, counted; restarted by ``local_stack.up``: leads
   published afterwards scored by the model again;
3. BigQuery unavailable for 10 s (connections refused and reset): the sink retries, every row lands once;
4. a redelivery storm: every message published twice (a publisher retry after a lost answer) while a competing
   consumer lets the ack deadline of a share of them lapse, so they come back late: no duplicate lead or event;
5. the pipeline SIGKILLed mid-stream and started again on the same identity store: nobody gets a second lead;
6. the pipeline's log holds none of the test people's phones, e-mails or names.

The 9.9 MB message (just under Pub/Sub's 10 MB limit) is above --max_payload_bytes (1 MB), so it is dead-lettered as
``payload_too_large`` with its first 64 KiB, size and SHA-256. It used to end the local pipeline: against an emulator
the official client pulls with gRPC's 4 MiB receive limit; see infra/local/pubsub_emulator/client.py.

Scorer auth (no token / wrong token refused) is covered by tests/e2e/test_scorer_service.py; parser fuzzing by
tests/unit/*fuzz*.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta

import psutil
import pytest

from infra.local import stack as local_stack
from pipelines.dev.demo import publish
from pipelines.synthetic import generate
from tests.helpers.reliability import Run, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]



# --- the two sides -----------------------------------------------------------------------------------------------


def send(run: Run, batch: str, messages: list[tuple[bytes, dict]], manifest: generate.Manifest | None = None,
         units: int | None = None) -> list[str]:
    ids = publish(messages, run.cfg.topic("input"))
    run.batches.setdefault(batch, []).extend(ids)
    run.units += manifest.units if manifest is not None else (units if units is not None else len(messages))
    if manifest is not None:
        run.persons |= manifest.persons
    return ids


def rows(run: Run) -> dict[str, list[dict]]:
    client = run.client()
    q = {
        "events": "SELECT event_id, message_id, lead_id, outcome, IFNULL(phone_e164, email) AS person "
                  "FROM `{d}.lead_events`",
        "dead": "SELECT message_id, stage, error_type FROM `{d}.dead_letters`",
        "leads": "SELECT lead_id, score_source, phone_e164, email, full_name FROM `{d}.leads`",
        "merges": "SELECT merged_lead_id, into_lead_id, merged_at FROM `{d}.lead_merges`",
    }
    return {k: [dict(r) for r in client.query(sql.format(d=run.dataset)).result()] for k, sql in q.items()}


def in_batch(run: Run, batch: str, records: list[dict]) -> list[dict]:
    ids = set(run.batches[batch])
    return [r for r in records if r["message_id"].split("#")[0] in ids]


def wait_accounted(run: Run, timeout: float = 240) -> dict[str, list[dict]]:
    def accounted():
        r = rows(run)
        return r if len(r["events"]) + len(r["dead"]) >= run.units and len(live(r)) >= len(run.persons) else None

    wait_until(accounted, timeout, f"{run.units} units accounted", run.pipeline, every=2)
    time.sleep(4)  # a duplicate would show up now
    return rows(run)


def check_invariant(run: Run, r: dict[str, list[dict]]) -> None:
    events, dead, leads = r["events"], r["dead"], r["leads"]
    assert len(events) + len(dead) == run.units, (len(events), len(dead), run.units)
    assert len({e["event_id"] for e in events}) == len(events), "an event written twice"
    units = Counter(x["message_id"] for x in events + dead)
    assert not [u for u, n in units.items() if n > 1], "a unit accounted twice"
    assert len(live(r)) == len(run.persons), (len(live(r)), len(run.persons))
    assert len({x["lead_id"] for x in leads}) == len(leads), "a lead written twice"
    assert not [d for d in dead if d["stage"] == "sink"], "rows the sink gave up on"


def live(r: dict[str, list[dict]]) -> list[dict]:
    """Leads not merged into another (one per person)."""
    merged = {m["merged_lead_id"] for m in r["merges"]}
    return [x for x in r["leads"] if x["lead_id"] not in merged]


def new_leads(run: Run, batch: str, r: dict[str, list[dict]]) -> list[dict]:
    lead_ids = {e["lead_id"] for e in in_batch(run, batch, r["events"]) if e["outcome"] == "new"}
    return [x for x in r["leads"] if x["lead_id"] in lead_ids]


def kill_tree(pid: int) -> None:
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        p.kill()  # SIGKILL
    _, alive = psutil.wait_procs(procs, timeout=15)
    assert not alive, alive


# --- 1. poison messages --------------------------------------------------------------------------------------------

DECOY_PHONE = "+12065550147"
HOSTILE_SENDER = "alerts@portal.example.net"
HOSTILE_HTML = (
    "From: Portal <alerts@portal.example.net>\r\nTo: leads@leads.example.com\r\nSubject: New lead\r\n"
    "Message-ID: <hostile-1@portal.example.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><head><link rel=stylesheet href='http://evil.example.net/x.css'>"
    "<script src='http://evil.example.net/x.js'></script>"
    f"<script>var phone='{DECOY_PHONE}'; var email='decoy@evil.example.net'; fetch('http://evil.example.net/');"
    "</script><style>.p:after{content:'Phone: +1 206 555 0147'}</style></head>"
    "<body onload=\"document.location='http://evil.example.net/'\"><img src='http://evil.example.net/p.gif'>"
    "<iframe src='http://evil.example.net/frame'></iframe><p>Hello!</p></body></html>"
)


def poison() -> list[tuple[str, bytes, dict, str | None]]:
    """(name, data, attributes, expected error_type or None for any dead letter)."""
    big = b'{"external_id": "big", "message": "' + b"x" * 9_900_000 + b'"}'
    return [
        ("9.9 MB payload", big, {"provider": "api"}, "payload_too_large"),
        ("10,000-deep JSON array", b"[" * 10_000 + b"]" * 10_000, {"provider": "api"}, "json_too_deep"),
        ("10,000-deep JSON object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, {"provider": "meta_lead_ads"}, None),
        ("invalid UTF-8", b'{"external_id": "\xff\xfe\xfd", "phone": "\xc3\x28"}', {"provider": "api"},
         "invalid_utf8"),
        ("invalid UTF-8 e-mail", b"From: a@b.example\r\nSubject: \xff\r\n\r\n\xfe\xfd body",
         {"provider": "inbound_email"}, None),
        ("HTML e-mail with scripts and external references", HOSTILE_HTML.encode(), {"provider": "inbound_email"},
         "lead or dead letter"),
    ]


def test_poison_messages_become_dead_letters_and_the_stream_flows_on(run):
    cases = poison()
    ids = send(run, "poison", [(data, attrs) for _, data, attrs, _ in cases])
    messages, manifest = generate.generated_messages(40, seed=101, bad_share=0.1)
    send(run, "after_poison", messages, manifest)  # published after the poison: must flow on
    r = wait_accounted(run)
    events = {e["message_id"]: e for e in in_batch(run, "poison", r["events"])}
    if ids[-1] in events:  # the HTML mail, read as a person writing from its sender address: a lead without phone
        run.persons.add(HOSTILE_SENDER)
        lead = next(x for x in r["leads"] if x["lead_id"] == events[ids[-1]]["lead_id"])
        assert lead["email"] == HOSTILE_SENDER and lead["phone_e164"] is None, lead
        assert "<" not in (lead["full_name"] or ""), lead
    check_invariant(run, r)
    dead = {d["message_id"]: d for d in in_batch(run, "poison", r["dead"])}
    for (name, _, _, expected), mid in zip(cases, ids, strict=True):
        if expected == "lead or dead letter":
            assert (mid in dead) != (mid in events), name
            continue
        assert mid in dead, f"{name}: not a dead letter"
        if expected:
            assert dead[mid]["error_type"] == expected, (name, dead[mid])
    assert set(events) <= {ids[-1]}
    assert len(in_batch(run, "after_poison", r["events"])) + len(in_batch(run, "after_poison", r["dead"])) \
        == manifest.units
    assert DECOY_PHONE not in {x["phone_e164"] for x in r["leads"]}
    print("poison:", {name: dead[mid]["stage"] + "/" + dead[mid]["error_type"] if mid in dead else "lead event"
                      for (name, *_), mid in zip(cases, ids, strict=True)})


# --- 2. scorer killed and restarted --------------------------------------------------------------------------------


def test_scorer_killed_midstream_falls_back_then_model_scores_resume(run):
    pid = local_stack.load_state(run.cfg)["scorer"].pid
    kill_tree(pid)
    messages, manifest = generate.generated_messages(30, seed=202)
    send(run, "scorer_down", messages, manifest)
    r = wait_accounted(run)
    check_invariant(run, r)
    down = Counter(x["score_source"] for x in new_leads(run, "scorer_down", r))
    assert down and set(down) == {"fallback"}, down

    lines: list[str] = []
    local_stack.up(run.cfg, out=lines.append)
    assert any(line.startswith("stale: scorer") for line in lines), lines
    assert any(line.startswith("scorer: started") for line in lines), lines
    messages, manifest = generate.generated_messages(30, seed=303)
    send(run, "scorer_back", messages, manifest)
    r = wait_accounted(run)
    check_invariant(run, r)
    back = Counter(x["score_source"] for x in new_leads(run, "scorer_back", r))
    print(f"scorer down: {dict(down)}; after restart: {dict(back)}")
    assert back.get("model", 0) >= 1 and back.get("model", 0) >= back.get("fallback", 0), back


# --- 3. BigQuery unavailable for 10 s ------------------------------------------------------------------------------


def test_bigquery_unavailable_for_10s_then_everything_written_once(run):
    messages, manifest = generate.generated_messages(30, seed=404)
    run.bq_proxy.cut()
    try:
        cut_at = time.monotonic()
        send(run, "bq_down", messages, manifest)
        time.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))
        during = rows(run)  # straight to the emulator: nothing of this batch can have landed
        assert not in_batch(run, "bq_down", during["events"] + during["dead"])
    finally:
        run.bq_proxy.restore()
    r = wait_accounted(run)
    check_invariant(run, r)
    got = len(in_batch(run, "bq_down", r["events"])) + len(in_batch(run, "bq_down", r["dead"]))
    assert got == manifest.units
    print(f"bigquery outage: {got}/{manifest.units} units of the batch written after the outage, "
          f"{len(new_leads(run, 'bq_down', r))} new leads")


# --- 4. redelivery storm -------------------------------------------------------------------------------------------


def test_redelivery_storm_no_duplicate_leads_or_events(run):
    from google.cloud import pubsub_v1

    messages, manifest = generate.generated_messages(30, seed=505)
    subscriber = pubsub_v1.SubscriberClient()
    sub = run.cfg.subscription("leads-in-pipeline")
    lapsed: set[str] = set()
    send(run, "storm", messages, manifest)
    send(run, "storm", messages, units=manifest.units)  # every message again: a publisher retry storm
    # A competing consumer grabs what it can, lets the deadlines of a share lapse (10 s) and nacks the rest.
    rng = random.Random(5)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        resp = subscriber.pull(request={"subscription": sub, "max_messages": 20, "return_immediately": True},
                               timeout=10)
        for m in resp.received_messages:
            if rng.random() < 0.5:
                subscriber.modify_ack_deadline(request={"subscription": sub, "ack_ids": [m.ack_id],
                                                        "ack_deadline_seconds": 10})
                lapsed.add(m.message.message_id)
            else:
                subscriber.modify_ack_deadline(request={"subscription": sub, "ack_ids": [m.ack_id],
                                                        "ack_deadline_seconds": 0})
    subscriber.close()
    r = wait_accounted(run)
    check_invariant(run, r)
    storm_events = in_batch(run, "storm", r["events"])
    outcomes = Counter(e["outcome"] for e in storm_events)
    assert len(storm_events) + len(in_batch(run, "storm", r["dead"])) == 2 * manifest.units
    print(f"redelivery storm: {2 * len(messages)} messages, {len(lapsed)} with lapsed deadlines; "
          f"outcomes {dict(outcomes)}; {len(new_leads(run, 'storm', r))} new leads")


# --- 5. the pipeline killed mid-stream and started again -----------------------------------------------------------


def test_a_restarted_pipeline_knows_every_person(run):
    """SIGKILL in the middle of a batch, start again on the same identity store, send everybody again (new
    message ids): no person gets a second lead. (Units read before the kill can be lost: the DirectRunner
    acknowledges a pull before processing it; Dataflow acknowledges after its checkpoint.)"""
    manifest = generate.Manifest()
    messages = [generate.publishable(line.encode()) for line in generate.generate(
        160, seed=61, bad_share=0.0, manifest=manifest, start=generate.DEFAULT_START + timedelta(days=3))]
    before = publish(messages, run.cfg.topic("input"))
    wait_until(lambda: len(in_batch_ids(before, rows(run)["events"])) >= 40, 180, "40 events before the kill",
               run.pipeline, every=1)
    kill_tree(run.pipeline.pid)
    run.restart()
    after = publish(messages, run.cfg.topic("input"))

    def all_after():
        r = rows(run)
        return r if len(in_batch_ids(after, r["events"])) >= manifest.units else None

    r = wait_until(all_after, 300, "every unit sent after the restart decided", run.pipeline, every=2)
    time.sleep(4)
    r = rows(run)
    into = {m["merged_lead_id"]: m["into_lead_id"] for m in sorted(r["merges"], key=lambda m: m["merged_at"])}
    people = {}
    for e in in_batch_ids(before + after, r["events"]):
        lead_id = e["lead_id"]
        while lead_id in into:
            lead_id = into[lead_id]
        people.setdefault(e["person"], set()).add(lead_id)
    twice = [p for p, ids in people.items() if len(ids) > 1]
    decided_before = len(in_batch_ids(before, r["events"]))
    print(f"restart: {decided_before} of {manifest.units} units decided before the kill and restart, "
          f"{len(people)} people, {len(twice)} with a second lead")
    assert people and not twice
    # Leave the ledger consistent for the scenarios after this one: lost units are not expected any more.
    run.units = len(r["events"]) + len(r["dead"])
    run.persons |= manifest.persons


def in_batch_ids(ids: list[str], events: list[dict]) -> list[dict]:
    wanted = set(ids)
    return [e for e in events if e["message_id"].split("#")[0] in wanted]


# --- 6. no PII in the pipeline's log -------------------------------------------------------------------------------


def test_no_pii_in_the_pipeline_log(run):
    r = rows(run)
    assert r["leads"]
    secrets = set()
    for x in r["leads"]:
        secrets |= {x["phone_e164"], x["email"], x["full_name"]} - {None, ""}
        if x["phone_e164"]:
            secrets.add(x["phone_e164"][-10:])
    secrets |= {p.rpartition(":")[2] for p in run.persons}  # "phone:+1..." or a bare phone
    log = run.log_path.read_text(errors="replace")
    assert log, "the pipeline wrote no log at all"
    leaked = sorted(s for s in secrets if s in log)
    assert not leaked, f"{len(leaked)} PII values in the pipeline log (e.g. a {len(leaked[0])}-char value)"
    print(f"pii scan: {len(secrets)} values, {len(log):,} log chars, none found")
