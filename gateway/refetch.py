"""``leadflow meta-refetch``: read again the Meta leads the gateway could not read when their webhook came.

    leadflow meta-refetch --dry-run                       # what is waiting (nothing read, published or acked)
    leadflow meta-refetch                                 # read each lead from the Graph API, publish it, ack
    leadflow meta-refetch --subscription projects/P/subscriptions/lead-dead-letters-ops --limit 500

When a webhook's lead cannot be read (Graph down, throttled, a token expired), the gateway answers Meta 200 and keeps
the notification on the dead-letter topic (stage ``gateway``, error type ``meta_fetch_failed``, with the
``leadgen_id``, ``form_id`` and ``page_id`` attributes). Once the cause is fixed, this pulls those dead letters from
the dead-letter subscription (default: the project's ``lead-dead-letters-ops``), reads each lead from the Graph API
(the gateway's settings: ``LEADFLOW_META_PAGE_ACCESS_TOKEN``, ``LEADFLOW_META_GRAPH_URL``; docs/gateway.md) and
publishes it to the input topic as the webhook path does, with ``refetched_from`` naming the dead letter. A dead
letter is acked only after its lead was published. A lead that still cannot be read stays on the subscription, with
the reason in the output; so do all other dead letters (``leadflow replay-dead-letters`` handles those, and leaves
these to this command). A lead read twice (a retry after a crash) comes out of the pipeline as a ``replay``.

Output: counts, dead-letter ids and lead ids only (a lead id names no person).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field

from gateway.config import GatewayConfig, load_config
from gateway.meta_graph import GraphClient, LeadFetchFailed
from gateway.publishing import Publisher, PublishFailed, PubSubPublisher, attributes, new_request_id, rfc3339_utc
from schemas.resources import Resources
from transforms.messages import GATEWAY_STAGE, META_FETCH_FAILED
from transforms.parsers import meta_lead_ads

DEAD_LETTER_SUBSCRIPTION = "lead-dead-letters-ops"
PULL_BATCH = 100


def kept_notification(attrs: dict[str, str]) -> str | None:
    """The leadgen id of a dead letter the gateway kept for a re-read, else None (any other dead letter)."""
    if attrs.get("stage") != GATEWAY_STAGE or attrs.get("error_type") != META_FETCH_FAILED:
        return None
    leadgen_id = attrs.get("leadgen_id", "")
    return leadgen_id if leadgen_id.isdigit() else None


@dataclass
class RefetchReport:
    published: int = 0
    left: Counter = field(default_factory=Counter)  # reason -> dead letters left on the subscription
    lines: list[str] = field(default_factory=list)


async def refetch_one(config: GatewayConfig, graph: GraphClient, publisher: Publisher | None, message) -> str:
    """``published`` (or ``waiting`` in a dry run), ``other`` for a dead letter that is not a kept notification, or
    the PII-free reason the lead still cannot be read or published."""
    attrs = dict(message.attributes)
    leadgen_id = kept_notification(attrs)
    if leadgen_id is None:
        return "other"
    if publisher is None:
        return "waiting"
    try:
        lead = await graph.fetch_lead(leadgen_id)
    except LeadFetchFailed as e:
        return e.reason
    ids = {k: attrs.get(k) for k in ("leadgen_id", "form_id", "page_id")}
    try:
        await publisher.publish(config.input_topic, lead, attributes(
            meta_lead_ads.PROVIDER, new_request_id(), rfc3339_utc(), refetched_from=message.message_id, **ids))
    except PublishFailed:
        return "publish_failed"
    return "published"


async def refetch(config: GatewayConfig, graph: GraphClient, publisher: Publisher | None, subscriber,
                  subscription: str, limit: int | None = None) -> RefetchReport:
    """Pull until the subscription has nothing more (or ``limit`` kept notifications were seen); ack what was
    published, put everything else back at once (ack deadline 0)."""
    report = RefetchReport()
    seen: set[str] = set()
    left: list[str] = []
    try:
        while limit is None or sum(report.left.values()) + report.published < limit:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": PULL_BATCH,
                                                "return_immediately": True}, timeout=30)
            fresh = [m for m in response.received_messages if m.message.message_id not in seen]
            left += [m.ack_id for m in response.received_messages if m.message.message_id in seen]
            if not fresh:
                break
            done: list[str] = []
            for received in fresh:
                seen.add(received.message.message_id)
                outcome = await refetch_one(config, graph, publisher, received.message)
                if outcome == "published":
                    report.published += 1
                    done.append(received.ack_id)
                    report.lines.append(f"published lead {received.message.attributes['leadgen_id']} "
                                        f"(dead letter {received.message.message_id})")
                    continue
                left.append(received.ack_id)
                if outcome != "other":
                    report.left[outcome] += 1
                    report.lines.append(f"left dead letter {received.message.message_id}: {outcome}")
            if done:
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": done})
    finally:
        for start in range(0, len(left), 1000):
            subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": left[start:start + 1000],
                                                    "ack_deadline_seconds": 0})
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow meta-refetch", description=__doc__.split("\n")[0])
    ap.add_argument("--subscription", help=f"the dead-letter subscription (default: the project's "
                                           f"{DEAD_LETTER_SUBSCRIPTION})")
    ap.add_argument("--limit", type=int, help="stop after this many kept notifications")
    ap.add_argument("--dry-run", action="store_true", help="count what is waiting; read, publish and ack nothing")
    args = ap.parse_args(argv)
    config = load_config()
    subscription = args.subscription or Resources(config.project).subscription(DEAD_LETTER_SUBSCRIPTION)

    async def run() -> int:
        from google.cloud import pubsub_v1

        graph = GraphClient(config.meta_graph_url, config.meta_page_access_token,
                            attempts=config.meta_fetch_attempts, backoff=config.meta_fetch_backoff)
        publisher = None if args.dry_run else PubSubPublisher(config.publish_timeout)
        subscriber = pubsub_v1.SubscriberClient()
        try:
            report = await refetch(config, graph, publisher, subscriber, subscription, args.limit)
        finally:
            await graph.close()
            subscriber.close()
            if publisher is not None:
                publisher.close()
        for line in report.lines:
            print(line)
        waiting = report.left.pop("waiting", 0)
        print(f"{report.published} leads read again and published; "
              + (f"{waiting} waiting (dry run); " if args.dry_run else "")
              + f"{sum(report.left.values())} left" + (f" ({dict(report.left)})" if report.left else ""))
        return 1 if report.left else 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
