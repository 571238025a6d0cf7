"""``leadflow identity-seed``: a store seeded from the tables knows every person under the lead id the tables use.

The bounded pipeline runs over the bundled sample; its lead_events and lead_merges seed a SQLite store; the same
messages sent again under new message ids (the people coming back to a new job) make no new lead and no merge."""

from __future__ import annotations

import json

import pytest

from pipelines import lead_pipeline
from pipelines.ops import identity_seed
from pipelines.synthetic.samples import sample_path

pytestmark = pytest.mark.slow


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _renamed(src, dst, prefix: str):
    with src.open() as f, dst.open("w") as out:
        for line in f:
            try:
                row = json.loads(line)
                row["message_id"] = prefix + str(row["message_id"])
                line = json.dumps(row) + "\n"
            except (ValueError, TypeError, KeyError):  # the sample's unreadable lines stay as they are
                pass
            out.write(line)


def test_a_seeded_store_knows_every_person_of_the_tables(tmp_path, capsys):
    messages = sample_path()
    first = tmp_path / "first"
    lead_pipeline.run([f"--input_file={messages}", f"--output_dir={first}", "--scorer=none"])
    merged = {m["merged_lead_id"] for m in _rows(first / "lead_merges.jsonl")}
    live = {e["lead_id"] for e in _rows(first / "lead_events.jsonl")} - merged

    store = f"sqlite:{tmp_path / 'identity.sqlite'}"
    assert identity_seed.main(["--from_dir", str(first), "--identity_store", store]) == 0
    assert f"{len(live):,} persons" in capsys.readouterr().out

    again = tmp_path / "again.jsonl"
    _renamed(messages, again, "returning-")
    second = tmp_path / "second"
    lead_pipeline.run([f"--input_file={again}", f"--output_dir={second}", "--scorer=none",
                       f"--identity_store={store}"])
    events = _rows(second / "lead_events.jsonl")
    assert events and not [e for e in events if e["outcome"] == "new"]
    assert {e["lead_id"] for e in events} <= live
    assert _rows(second / "lead_merges.jsonl") == []

    assert identity_seed.main(["--from_dir", str(first), "--identity_store", store]) == 0
    assert "wrote 0 rows" in capsys.readouterr().out  # what a job wrote since is kept


def test_seeding_refuses_a_memory_store_and_a_bad_spec(tmp_path):
    for spec in ("memory", "redis:x"):
        with pytest.raises(SystemExit):
            identity_seed.main(["--from_dir", str(tmp_path), "--identity_store", spec])


@pytest.mark.e2e
def test_seeding_from_bigquery_writes_what_seeding_from_the_files_writes(tmp_path, bigquery_emulator, capsys):
    import sqlite3

    from schemas import bigquery as bq
    from tests.helpers.bigquery import PROJECT, insert, new_dataset

    out = tmp_path / "out"
    lead_pipeline.run([f"--input_file={sample_path()}", f"--output_dir={out}", "--scorer=none"])
    client = bq.client_for(PROJECT, bigquery_emulator)
    dataset, _ = new_dataset(client)
    insert(client, dataset, "lead_events", _rows(out / "lead_events.jsonl"))
    stores = {}
    for name, source in (("files", ["--from_dir", str(out)]), ("bigquery", ["--bq_dataset", f"{PROJECT}:{dataset}"])):
        path = tmp_path / f"{name}.sqlite"
        assert identity_seed.main([*source, "--identity_store", f"sqlite:{path}"]) == 0
        with sqlite3.connect(path) as db:
            stores[name] = {k: json.loads(v) for k, v in db.execute("SELECT k, v FROM identity")}
    assert stores["files"] and stores["bigquery"] == stores["files"]
    assert "persons" in capsys.readouterr().out
