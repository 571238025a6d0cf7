"""End to end on the local stack: `leadflow local up`, messages published with the official client,
the streaming pipeline on the DirectRunner, rows found in the BigQuery emulator, deliveries and dead
letters on their topics, then `leadflow local down`.

The streaming result must equal the bounded run over the same messages: the same number of leads,
the same outcome counts (order-independent: per person one `new`, one `cross_source` per further
source, the rest duplicates or replays by id), the same dead letters by reason, and the
one-row-per-unit invariant.
"""

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from infra.local import gcloud_pubsub
from infra.local import stack as local_stack
from infra.local.processes import free_port, stop_process
from pipelines import lead_pipeline
from pipelines.dev.demo import count_rows, counted_in_latest_panes, pull_all, sample_messages, wait_accounted
from pipelines.ops.summary import read_table
from pipelines.synthetic import generate

pytestmark = pytest.mark.e2e


GCLOUD = pytest.param("gcloud", marks=pytest.mark.skipif(not gcloud_pubsub.available(),
                                                         reason="the official Pub/Sub emulator is not installed"))


@pytest.fixture(scope="module", params=["builtin", GCLOUD])
def stack(tmp_path_factory, request):
    """The local stack with each Pub/Sub emulator (gcloud's where it is installed)."""
    home = tmp_path_factory.mktemp("stack")
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(), pubsub=request.param,
                                  bigquery_grpc_port=free_port(), scorer_port=free_port(), home=home)
    lines = []
    local_stack.up(cfg, out=lines.append)
    saved = {k: os.environ.get(k) for k in cfg.env()}
    os.environ.update(cfg.env())
    yield cfg, lines
    local_stack.down(cfg, out=lines.append)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def messages_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "messages.jsonl"
    kinds = tuple(k for k in generate.BAD_KINDS if k not in ("not_a_message_line", "oversize"))
    manifest = generate.write(path, 120, seed=23, bad_share=0.1, bad_kinds=kinds)
    return path, manifest


def test_up_is_idempotent_and_status_reports(stack):
    cfg, _ = stack
    again = []
    local_stack.up(cfg, out=again.append)
    assert any("already running" in line for line in again)
    assert any("exists" in line for line in again) and not any("created" in line for line in again)
    report = []
    assert local_stack.status(cfg, out=report.append)
    assert sum("running" in line for line in report) == 3  # pubsub, bigquery, scorer
    assert any(line.startswith("pubsub: running (pid ") and f", {cfg.pubsub} emulator)" in line for line in report)


def test_streaming_matches_bounded_and_every_unit_is_accounted(stack, messages_file, tmp_path):
    cfg, _ = stack
    path, manifest = messages_file
    bounded_out = tmp_path / "bounded"
    lead_pipeline.run([f"--input_file={path}", f"--output_dir={bounded_out}"])
    bounded_events = list(read_table(str(bounded_out), "lead_events"))
    bounded_dead = list(read_table(str(bounded_out), "dead_letters"))

    log = (tmp_path / "pipeline.log").open("wb")
    args = [*cfg.pipeline_args(), "--early_firing_seconds=5"]
    pipeline = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", *args], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **cfg.env()})
    try:
        from google.cloud import pubsub_v1

        from schemas.bigquery import client_for

        publisher = pubsub_v1.PublisherClient()
        futures = [publisher.publish(cfg.topic("input"), data, **attrs) for data, attrs in sample_messages(path)]
        assert len({f.result(timeout=30) for f in futures}) == manifest["messages"]
        client = client_for(cfg.project, cfg.bigquery_host)
        dataset = f"{cfg.project}.{cfg.dataset}"
        wait_accounted(client, dataset, manifest["units"], pipeline, timeout=300)
        time.sleep(5)  # anything extra (a duplicate) would show up now
        counts = count_rows(client, dataset)
        assert counts["lead_events"] + counts["dead_letters"] == manifest["units"]
        assert counts["lead_events"] == len(bounded_events)
        assert counts["leads"] == manifest["persons"]
        outcomes = {r["outcome"]: r["n"] for r in client.query(
            f"SELECT outcome, COUNT(*) AS n FROM `{dataset}.lead_events` GROUP BY outcome").result()}
        assert outcomes == dict(Counter(e["outcome"] for e in bounded_events))
        reasons = {f"{r['stage']}/{r['error_type']}": r["n"] for r in client.query(
            f"SELECT stage, error_type, COUNT(*) AS n FROM `{dataset}.dead_letters` GROUP BY 1, 2").result()}
        assert reasons == dict(Counter(f"{d['stage']}/{d['error_type']}" for d in bounded_dead))
        distinct = next(iter(client.query(
            f"SELECT COUNT(DISTINCT event_id) AS n FROM `{dataset}.lead_events`").result()))["n"]
        assert distinct == counts["lead_events"]
        assert counts["lead_source_history"] == outcomes.get("new", 0) + outcomes.get("cross_source", 0)
        deadline = time.monotonic() + 45  # daily counts: the newest pane per (source, day) adds up to all events
        while counted_in_latest_panes(client, dataset) < counts["lead_events"] and time.monotonic() < deadline:
            time.sleep(2)
        assert counted_in_latest_panes(client, dataset) == counts["lead_events"]

        scored = {(r["score_source"], r["model_version"] is not None): r["n"] for r in client.query(
            f"SELECT score_source, model_version, COUNT(*) AS n FROM `{dataset}.leads` GROUP BY 1, 2").result()}
        assert scored == {("model", True): counts["leads"]}  # the stack's BentoML scorer scored every lead
        deliveries = pull_all(cfg.subscription("lead-deliveries-crm"))
        review = pull_all(cfg.subscription("lead-manual-review-ops"), max_wait=2)
        delivered = {m.message.attributes["lead_id"] for m in deliveries}  # re-assignments deliver again
        reviewed = {m.message.attributes["lead_id"] for m in review}
        # with no agent answering, agents fill to their caps and the rest wait in their desk's queue
        queued = {r["lead_id"] for r in client.query(
            f"SELECT DISTINCT lead_id FROM `{dataset}.lead_assignments` WHERE action = 'queued'").result()}
        assert not queued & reviewed and len(delivered | reviewed | queued) == counts["leads"]
        first = deliveries[0].message
        assert json.loads(first.data)["lead_id"] == first.attributes["lead_id"] == first.ordering_key
        assert first.attributes["outcome"] == "new" and first.attributes["provider"]
        assert {m.message.attributes["priority"] for m in deliveries} <= {"hot", "warm", "cold"}
        assert all(m.message.attributes["territory"] and m.message.attributes["team"] and
                   m.message.attributes["agent"] for m in deliveries)
        assert all(m.message.attributes["routing_reason"] for m in review)
        routed = {r["routing_status"]: r["n"] for r in client.query(
            f"SELECT routing_status, COUNT(*) AS n FROM `{dataset}.leads` GROUP BY 1").result()}
        assert sum(routed.values()) == counts["leads"] and set(routed) <= {"assigned", "manual_review", "queued"}
        # the living record: one leads_current row per lead, live ones one per person, with the routing status
        current = {r["status"]: r["n"] for r in client.query(
            f"SELECT status, COUNT(*) AS n FROM `{dataset}.leads_current` GROUP BY status").result()}
        assert sum(n for status, n in current.items() if status != "merged") == manifest["persons"]
        assert set(current) - {"merged"} <= {"assigned", "manual_review", "queued"} and current.get("assigned")
        first_steps = next(iter(client.query(
            f"SELECT COUNT(DISTINCT lead_id) AS n FROM `{dataset}.lead_assignments` WHERE attempt = 1").result()))["n"]
        assert first_steps == counts["leads"]
        dead = pull_all(cfg.subscription("lead-dead-letters-ops"), max_wait=3)
        assert len(dead) == counts["dead_letters"]
        assert all(m.message.attributes["stage"] and m.message.attributes["error_type"] for m in dead)
    finally:
        stop_process(pipeline)
        log.close()


def test_a_crashed_service_is_reported_and_restarted(stack):
    """Runs last in this module: it kills the Pub/Sub emulator the way a crash would."""
    import signal

    cfg, _ = stack
    pid = local_stack.load_state(cfg)["pubsub"].pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while local_stack.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not local_stack.pid_alive(pid), "the killed emulator is still alive"
    report = []
    assert not local_stack.status(cfg, out=report.append), report
    assert any(line.startswith("pubsub: STALE") for line in report), report
    lines = []
    local_stack.up(cfg, out=lines.append)
    assert any(line.startswith("stale: pubsub") for line in lines), lines
    assert any(line.startswith("pubsub: started") for line in lines), lines
    assert any("created" in line and "leads-in" in line for line in lines), lines  # the in-memory topics came back
    final = []
    assert local_stack.status(cfg, out=final.append), final
