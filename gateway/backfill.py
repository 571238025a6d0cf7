"""``leadflow meta-backfill``: the lookback sync lead teams run beside the webhook, so leads whose webhook was missed
(an outage, a Meta delivery that gave up) still arrive.

    leadflow meta-backfill --form_id 555555555 --since 24h        # the last 24 hours of one form
    leadflow meta-backfill --form_id 555555555 --since 2026-12-02T00:00:00Z --dry-run

It reads the form's leads from the Graph API bulk read (``GET /{form_id}/leads`` filtered on ``time_created``,
page by page) and publishes each lead object to the input topic as ``meta_lead_ads``, with the attributes the
webhook path gives it plus ``backfill=true``. Leads the webhook already delivered come out of the pipeline as
``replay`` events, not new leads, so running it again (or overlapping windows) is safe. Settings are the gateway's
(``LEADFLOW_META_PAGE_ACCESS_TOKEN``, ``LEADFLOW_META_GRAPH_URL``, the topic; docs/gateway.md). The output names
counts and ids only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.config import GatewayConfig, load_config
from gateway.meta_graph import GraphClient, LeadFetchFailed
from gateway.publishing import Publisher, PublishFailed, PubSubPublisher, attributes, new_request_id, rfc3339_utc
from transforms.parsers import meta_lead_ads

_AGO = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def since_time(text: str, now: datetime | None = None) -> datetime:
    """``24h``, ``90m``, ``7d`` before now, or an ISO 8601 time (UTC when it has no offset)."""
    now = now or datetime.now(UTC)
    match = _AGO.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class BackfillReport:
    pages: int = 0
    leads: int = 0
    published: int = 0
    error: str | None = None


async def backfill(config: GatewayConfig, graph: GraphClient, publisher: Publisher | None, form_id: str,
                   since: datetime) -> BackfillReport:
    """Read and publish (``publisher`` None: read only). Stops at the first failure, with the reason."""
    report = BackfillReport()
    request_id = new_request_id()
    try:
        async for lead, page in graph.form_leads(form_id, int(since.timestamp())):
            report.pages, report.leads = page, report.leads + 1
            if publisher is None:
                continue
            data = json.dumps(lead, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            attrs = attributes(meta_lead_ads.PROVIDER, request_id, rfc3339_utc(), leadgen_id=str(lead.get("id")),
                               form_id=form_id, backfill="true")
            await publisher.publish(config.input_topic, data, attrs)
            report.published += 1
    except LeadFetchFailed as e:
        report.error = e.reason
    except PublishFailed as e:
        report.error = f"publish_failed: {e}"
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow meta-backfill", description=__doc__.split("\n")[0])
    ap.add_argument("--form_id", required=True, action="append", help="a lead form id (repeat for several)")
    ap.add_argument("--since", default="24h", help="24h, 90m, 7d, or an ISO 8601 time (default 24h)")
    ap.add_argument("--dry-run", action="store_true", help="read and count, publish nothing")
    args = ap.parse_args(argv)
    config = load_config()
    since = since_time(args.since)

    async def run() -> int:
        graph = GraphClient(config.meta_graph_url, config.meta_page_access_token,
                            attempts=config.meta_fetch_attempts, backoff=config.meta_fetch_backoff)
        publisher = None if args.dry_run else PubSubPublisher(config.publish_timeout)
        failed = False
        try:
            for form_id in args.form_id:
                r = await backfill(config, graph, publisher, form_id, since)
                print(f"form {form_id}: {r.leads} leads since {since.isoformat()} in {r.pages} pages, "
                      f"{r.published} published" + (f"; stopped: {r.error}" if r.error else ""))
                failed |= r.error is not None
        finally:
            await graph.close()
            if publisher is not None:
                publisher.close()
        return 1 if failed else 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
