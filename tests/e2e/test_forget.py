"""``leadflow forget`` on the BigQuery emulator: a person who came through three providers, one merge and a dead
letter is gone from every table and from the identity store; their messages sent again (redelivered under the same
ids, replayed under new ids) end as ``erased_person`` dead letters without personal data; a new inquiry from them
later is a new lead. The bounded pipeline writes the tables (the emulator) and the identity store (SQLite)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from pipelines import lead_pipeline
from pipelines.ops import forget
from schemas import bigquery as bq
from schemas.records import TABLES
from tests.helpers.bigquery import PROJECT, new_dataset
from transforms.identity import ERASED_TYPE
from transforms.identity_store import open_store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHONE, EMAIL, NAME = "+14155550101", "ann.forget@example.org", "Ann Forgetme"
TRACES = ("4155550101", "415) 555-0101", EMAIL, NAME, "Forgetme")  # any of these in a row is a leak


def _api(mid: str, t: str, **body) -> dict:
    return {"message_id": mid, "publish_time": t, "attributes": {"provider": "api"}, "data": json.dumps(body)}


def ann_and_bob() -> list[dict]:
    meta = {"id": "9001", "created_time": "2026-11-16T09:00:00+0000", "form_id": "1", "campaign_id": "2",
            "ad_id": "3", "field_data": [{"name": "full_name", "values": [NAME]},
                                         {"name": "email", "values": [EMAIL]}]}
    sms = ("ToCountry=US&SmsStatus=received&Body=Still+interested%2C+Ann+Forgetme&To=%2B14155550199"
           "&MessageSid=SMann1&AccountSid=AC1&From=%2B14155550101&ApiVersion=2010-04-01")
    return [
        _api("ann-1", "2026-11-16T08:00:00Z", external_id="ann-1", full_name=NAME, phone="(415) 555-0101",
             created_at="2026-11-16T08:00:00Z", message="Call me about the flat"),
        {"message_id": "ann-2", "publish_time": "2026-11-16T09:00:05Z", "attributes": {"provider": "meta_lead_ads"},
         "data": json.dumps(meta)},  # e-mail only: a second person, until ann-4
        {"message_id": "ann-3", "publish_time": "2026-11-16T10:00:00Z", "attributes": {"provider": "twilio_sms"},
         "data": sms},
        _api("ann-4", "2026-11-16T11:00:00Z", external_id="ann-4", full_name=NAME, phone=PHONE, email=EMAIL,
             created_at="2026-11-16T11:00:00Z"),  # links phone and e-mail: the merge
        _api("ann-dead", "2026-11-16T12:00:00Z", external_id="ann-5", phone="415.555.0101", full_name=NAME,
             favourite_colour="teal"),  # an unknown key: a parse dead letter that names her
        _api("bob-1", "2026-11-16T12:30:00Z", external_id="bob-1", full_name="Bob Keepme", phone="+14155550102",
             email="bob@example.org", created_at="2026-11-16T12:30:00Z"),
    ]


def _write(path, messages):
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def _all_rows(client, dataset: str) -> dict[str, list[dict]]:
    names = list(TABLES) + bq.view_names()
    return {n: [dict(r.items()) for r in client.query(f"SELECT * FROM `{PROJECT}.{dataset}.{n}`").result()]
            for n in names}


def _leaks(rows: dict[str, list[dict]]) -> dict[str, int]:
    found = {}
    for name, table in rows.items():
        n = sum(1 for r in table if any(t in json.dumps(r, default=str) for t in TRACES))
        if n:
            found[name] = n
    return found


def _run(messages_file, dataset: str, store: str) -> None:
    lead_pipeline.run([f"--input_file={messages_file}", f"--bq_dataset={PROJECT}:{dataset}", "--bq_backend=client",
                       f"--identity_store={store}", "--scorer=none"])


def test_forget_erases_a_person_everywhere_and_their_messages_cannot_bring_them_back(tmp_path, bigquery_emulator,
                                                                                      capsys, caplog):
    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    store = f"sqlite:{tmp_path / 'identity.sqlite'}"
    first = ann_and_bob()
    _run(_write(tmp_path / "first.jsonl", first), dataset, store)

    before = _all_rows(client, dataset)
    ann_events = [e for e in before["lead_events"] if e["message_id"].startswith("ann-")]
    assert {e["provider"] for e in ann_events} == {"api", "meta_lead_ads", "twilio_sms"}
    assert len(before["lead_merges"]) == 1
    assert [d["message_id"] for d in before["dead_letters"]] == ["ann-dead"]
    leaked = _leaks(before)
    assert {"leads", "lead_events", "dead_letters"} <= set(leaked)
    ann_leads = {e["lead_id"] for e in ann_events}
    bob_rows = {n: [r for r in t if "Bob Keepme" in json.dumps(r, default=str)] for n, t in before.items()}

    dry = ["--bq_dataset", f"{PROJECT}:{dataset}", "--identity_store", store, "--requested_by", "ticket-20"]
    assert forget.main(["--email", "ANN.Forget@example.org", *dry, "--dry_run"]) == 0
    assert _leaks(_all_rows(client, dataset)) == leaked  # a dry run changes nothing
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    assert forget.main(["--phone", "(415) 555-0101", *dry]) == 0
    printed = capsys.readouterr()
    assert "erasure of subject " in printed.out and caplog.records  # the clients log at DEBUG: scanned too
    assert not any(t in printed.out + printed.err + caplog.text for t in TRACES)  # ids, counts and hashes only
    caplog.set_level(logging.WARNING)

    after = _all_rows(client, dataset)
    assert _leaks(after) == {}
    assert not [e for e in after["lead_events"] if e["lead_id"] in ann_leads]
    assert not [v for v in after["lead_versions"] if v["lead_id"] in ann_leads]
    assert not [a for a in after["lead_assignments"] if a["lead_id"] in ann_leads]
    for name, rows in bob_rows.items():  # the other person is untouched
        assert all(r in after[name] for r in rows), name
    audit = after["erasures"]
    assert [(a["requested_by"], a["identifier_kind"], a["dry_run"]) for a in audit] == [("ticket-20", "phone", False)]
    assert audit[0]["rows_deleted"] == sum(len(before[n]) - len(after[n]) for n in TABLES if n != "erasures")
    assert audit[0]["leads"] == len(ann_leads) == 2
    rows = open_store(store)
    try:
        held = rows.get([f"p:{lead}" for lead in ann_leads])
    finally:
        rows.close()
    assert held == {}

    # Everything again: redelivered (same ids), replayed (new ids, the same bytes), a late copy from before the
    # erasure under a new provider id, and a new inquiry from Ann after the erasure.
    now = datetime.now(UTC)
    later = (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    replays = [{**m, "message_id": "replay-" + m["message_id"],
                "attributes": {**m["attributes"], "replayed_from_message_id": m["message_id"]}}
               for m in first if m["message_id"] != "ann-dead"]
    late = _api("ann-late", "2026-11-17T08:00:00Z", external_id="ann-late", phone=PHONE,
                created_at="2026-11-16T07:00:00Z")
    new = _api("ann-new", later, external_id="ann-new", full_name=NAME, phone=PHONE, created_at=later)
    second = [m for m in first if m["message_id"] != "ann-dead"] + replays + [late, new]
    _run(_write(tmp_path / "second.jsonl", second), dataset, store)

    final = _all_rows(client, dataset)
    erased = {d["message_id"]: d for d in final["dead_letters"] if d["error_type"] == ERASED_TYPE}
    ann_old = {m["message_id"] for m in second if m["message_id"].startswith(("ann-", "replay-ann-"))} - {"ann-new"}
    assert set(erased) == ann_old
    assert all(d["payload"] is None and d["attributes"] == "{}" for d in erased.values())
    seen = {e["event_id"] for e in before["lead_events"]}
    events = {e["message_id"]: e for e in final["lead_events"] if e["event_id"] not in seen}  # the second run's
    assert not ann_old & set(events)  # each unit ends as exactly one lead event or one dead letter
    assert events["ann-new"]["outcome"] == "new" and events["ann-new"]["lead_id"] not in ann_leads
    assert events["replay-bob-1"]["outcome"] == "replay"  # Bob is still known; bob-1 again: the same event id
    assert "bob-1" not in events
    leaks = _leaks({n: [r for r in t if r.get("lead_id") != events["ann-new"]["lead_id"]] for n, t in final.items()
                    if n != "erasures"})
    assert leaks == {}  # only the new inquiry's own rows name her
    client.close()


def test_forget_refuses_bad_or_unknown_identifiers_without_repeating_them(tmp_path, bigquery_emulator, capsys):
    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    args = ["--bq_dataset", f"{PROJECT}:{dataset}", "--identity_store", f"sqlite:{tmp_path / 's.sqlite'}"]
    assert forget.main(["--phone", "415 555 01", *args]) == 1
    assert forget.main(["--email", "nobody@example.org", *args]) == 1
    assert forget.main(["--lead_id", "no-such-lead", *args]) == 1
    err = capsys.readouterr().err
    assert "not a valid phone" in err and "no lead carries that email" in err and "no such lead" in err
    assert "415 555 01" not in err and "nobody@example.org" not in err
    with pytest.raises(SystemExit):
        forget.main(["--email", "a@b.org", "--bq_dataset", f"{PROJECT}:{dataset}", "--identity_store", "memory"])
    client.close()
