"""``leadflow meta-refetch``: a Meta lead the gateway could not read is kept on the dead-letter topic; once the Graph
API answers again, the command reads it, publishes it to the input topic and acks that dead letter only. Dead letters
of other kinds stay for ``leadflow replay-dead-letters``, which in turn leaves the kept notifications alone."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.meta_graph import GraphClient
from gateway.publishing import PubSubPublisher
from gateway.refetch import kept_notification, refetch
from pipelines.ops.replay import interpret
from tests.gateway.conftest import fixture_bytes
from tests.gateway.test_webhooks import LEAD_1, LEAD_2, meta_sign

pytestmark = pytest.mark.e2e


def test_kept_notifications_only():
    kept = {"stage": "gateway", "error_type": "meta_fetch_failed", "leadgen_id": "900000000000002"}
    assert kept_notification(kept) == "900000000000002"
    assert kept_notification({**kept, "error_type": "invalid_json"}) is None
    assert kept_notification({**kept, "stage": "parse"}) is None
    assert kept_notification({**kept, "leadgen_id": "../me"}) is None


def test_a_kept_lead_is_read_again_published_and_acked(client, bus, graph, make_config, test_secrets):
    from google.cloud import pubsub_v1

    lead_2 = fixture_bytes("meta_graph_lead.json").replace(LEAD_1.encode(), LEAD_2.encode())
    graph.leads[LEAD_1] = fixture_bytes("meta_graph_lead.json")  # LEAD_2 unknown for now: Graph code 100
    body = fixture_bytes("meta_leadgen_webhook.json")
    r = client.post("/webhooks/meta", content=body,
                    headers={"X-Hub-Signature-256": meta_sign(body, test_secrets.meta_app_secret)})
    assert r.json()["kept_for_retry"] == 1
    assert len(bus.pull("input", 1)) == 1
    config = make_config()
    other = {"message_id": "m-9", "stage": "parse", "error_type": "invalid_json", "payload": "{", "provider": "api",
             "payload_encoding": "utf-8", "payload_truncated": False, "attributes": "{}", "error_message": "x"}
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(config.dead_letter_topic, json.dumps(other).encode(), stage="parse",
                      error_type="invalid_json").result(timeout=10)
    subscription = bus.subscriptions["dead_letters"]

    async def run(dry_run: bool):
        graph_client = GraphClient(config.meta_graph_url, config.meta_page_access_token, backoff=0.01)
        pub = None if dry_run else PubSubPublisher(5.0)
        try:
            return await refetch(config, graph_client, pub, bus.subscriber, subscription)
        finally:
            await graph_client.close()
            if pub is not None:
                pub.close()

    dry = asyncio.run(run(dry_run=True))
    assert dry.published == 0 and dry.left == {"waiting": 1}
    still_unknown = asyncio.run(run(dry_run=False))  # Graph still does not know the lead: it stays, with the reason
    assert still_unknown.published == 0
    assert list(still_unknown.left) == ["graph_http_400:GraphMethodException:code_100"]
    graph.leads[LEAD_2] = lead_2
    done = asyncio.run(run(dry_run=False))
    assert done.published == 1 and not done.left
    (lead,) = bus.pull("input", 1)
    assert lead.data == lead_2 and lead.attributes["provider"] == "meta_lead_ads"
    assert lead.attributes["leadgen_id"] == LEAD_2 and lead.attributes["refetched_from"]
    left = bus.pull("dead_letters", 1)  # the other dead letter is still there; the kept one was acked
    assert [m.attributes["error_type"] for m in left] == ["invalid_json"]
    publisher.stop()


def test_replay_dead_letters_leaves_kept_notifications_to_meta_refetch():
    from schemas.derive import to_row
    from transforms.messages import dead_letter

    dead = dead_letter(message_id="r:1", data=b'{"object":"page","entry":[]}', attributes={"provider": "meta_lead_ads"},
                       publish_time=None, provider="meta_lead_ads", stage="gateway", error_type="meta_fetch_failed",
                       error_message="graph down")
    item = interpret(json.dumps(to_row(dead), default=str).encode(), {"stage": "gateway"}, message_id="d-1")
    assert item.reason == "meta_refetch"
