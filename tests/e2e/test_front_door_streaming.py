"""Through the front door, streaming: ``leadflow local up`` with the gateway and its Graph API stand-in, the streaming
pipeline on the DirectRunner, generated messages sent the way each provider sends them (signed Meta webhooks whose
leads the gateway reads from the stand-in, Google Ads, Twilio and Knowlarity webhooks, SMTP, uploads, API posts),
and every message the gateway published accounted for in the BigQuery emulator: one lead event or dead letter per
unit, one lead per generated person."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from infra.local import stack as local_stack
from infra.local.processes import free_port, stop_process
from pipelines.dev.demo import count_rows, rows_per_provider, sample_messages, wait_accounted
from pipelines.dev.front_door import PROVIDERS_OF, FrontDoor
from pipelines.synthetic import generate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path):
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(), bigquery_grpc_port=free_port(),
                                  scorer=False, gateway=True, gateway_port=free_port(), smtp_port=free_port(),
                                  meta_graph_port=free_port(), home=tmp_path / "stack")
    saved = {k: os.environ.get(k) for k in cfg.env()}
    local_stack.up(cfg, out=lambda *_: None)
    os.environ.update(cfg.env())
    yield cfg
    local_stack.down(cfg, out=lambda *_: None)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_every_provider_through_the_gateway_to_bigquery(stack, tmp_path):
    cfg = stack
    path = tmp_path / "messages.jsonl"
    kinds = tuple(k for k in generate.BAD_KINDS if k not in ("not_a_message_line", "oversize"))
    manifest = generate.write(path, 90, seed=31, bad_share=0.08, bad_kinds=kinds)
    log = (tmp_path / "pipeline.log").open("wb")
    pipeline = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", *cfg.pipeline_args()], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **cfg.env()})
    door = FrontDoor.for_stack(cfg)
    try:
        sent = [door.send(data, attrs) for data, attrs in sample_messages(path)]
        doors = Counter(s.door for s in sent)
        assert {"meta", "google_ads", "twilio_sms", "twilio_voice", "knowlarity", "smtp", "upload", "api"} <= set(doors)
        # every signed provider delivery is accepted; only our own API refuses (invalid or repeated leads)
        assert {s.answer for s in sent if s.door not in ("api", "topic")} <= {"200", "250", "csv:202", "xlsx:202"}
        assert len(list(cfg.meta_graph_dir.glob("*.json"))) > 0  # the Meta leads were served by the stand-in
        gateway = door.gateway_counts()
        assert gateway["meta.published"] == sum(s.published for s in sent if s.door == "meta")
        assert gateway["smtp.published"] == doors["smtp"]

        from schemas.bigquery import client_for

        client = client_for(cfg.project, cfg.bigquery_host)
        dataset = f"{cfg.project}.{cfg.dataset}"
        units = sum(s.units for s in sent)
        wait_accounted(client, dataset, units, pipeline, timeout=300)
        counts = count_rows(client, dataset)
        assert counts["lead_events"] + counts["dead_letters"] == units
        assert counts["leads"] == manifest["persons"]
        rows = rows_per_provider(client, dataset)
        for name in ("meta", "google_ads", "twilio_sms", "knowlarity", "smtp", "upload"):
            assert sum(rows.get(p, 0) for p in PROVIDERS_OF[name]) == sum(s.units for s in sent if s.door == name)
        assert rows.get("api", 0) == sum(s.published for s in sent if s.door == "api")
    finally:
        door.close()
        stop_process(pipeline)
