"""``leadflow knowlarity-sync``: poll Knowlarity's call-log API, as lead teams do every 15 minutes, so calls whose
webhook never came still become leads.

    leadflow knowlarity-sync --since 15m
    leadflow knowlarity-sync --since 2026-12-03T00:00:00+05:30 --dry-run

``GET {LEADFLOW_KNOWLARITY_API_URL}?start_time=...&end_time=...&limit=...&offset=...`` with the ``x-api-key`` and
``Authorization`` (SR API key) headers answers ``{"meta": {"limit", "offset", "next", "total_count"}, "objects":
[call records]}`` (developer.knowlarity.com; times are India time, ``YYYY-MM-DD HH:MM:SS+05:30``). Each record is
published as ``knowlarity_call`` with ``call_uuid`` and ``sync=true``; a call the webhook already delivered comes
out of the pipeline as a ``replay`` event, so overlapping windows are safe. Output: counts only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx

from gateway.backfill import since_time
from gateway.config import GatewayConfig, load_config
from gateway.publishing import Publisher, PublishFailed, PubSubPublisher, attributes, new_request_id, rfc3339_utc
from transforms.parsers import knowlarity_call

PAGE_SIZE = 100
MAX_PAGES = 10_000  # a guard against an API that keeps answering the same page


class SyncFailed(RuntimeError):
    pass


def knowlarity_time(moment: datetime) -> str:
    """A time as the call-log API takes it: India time, ``YYYY-MM-DD HH:MM:SS+05:30``."""
    return moment.astimezone(ZoneInfo(knowlarity_call.KNOWLARITY_TIMEZONE)).isoformat(sep=" ", timespec="seconds")


@dataclass
class SyncReport:
    pages: int = 0
    calls: int = 0
    published: int = 0
    error: str | None = None


async def _page(http: httpx.AsyncClient, config: GatewayConfig, params: dict[str, str], attempts: int = 3,
                backoff: float = 0.5) -> dict:
    headers = {"x-api-key": config.knowlarity_api_key or "", "Authorization": config.knowlarity_sr_key or "",
               "Accept": "application/json"}
    for attempt in range(1, attempts + 1):
        try:
            response = await http.get(config.knowlarity_api_url, params=params, headers=headers)
        except httpx.HTTPError as e:
            reason, transient = f"unreachable:{type(e).__name__}", True
        else:
            if response.status_code == 200:
                try:
                    body = response.json()
                except ValueError:
                    raise SyncFailed("invalid_json") from None
                if not isinstance(body, dict):
                    raise SyncFailed("unexpected_answer")
                return body
            status = response.status_code
            reason, transient = f"http_{status}", status >= 500 or status == 429
        if not transient or attempt == attempts:
            raise SyncFailed(reason)
        await asyncio.sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


async def sync(config: GatewayConfig, publisher: Publisher | None, since: datetime, until: datetime,
               http: httpx.AsyncClient) -> SyncReport:
    """Every call record between ``since`` and ``until``, page by page (offset), each published unless dry."""
    report = SyncReport()
    request_id = new_request_id()
    offset = 0
    try:
        while report.pages < MAX_PAGES:
            body = await _page(http, config, {"start_time": knowlarity_time(since), "end_time": knowlarity_time(until),
                                              "limit": str(PAGE_SIZE), "offset": str(offset)})
            records = [r for r in body.get("objects") or () if isinstance(r, dict)]
            report.pages += 1
            for record in records:
                report.calls += 1
                if publisher is None:
                    continue
                data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                uuid = record.get("uuid")
                attrs = attributes(knowlarity_call.PROVIDER, request_id, rfc3339_utc(),
                                   call_uuid=str(uuid) if isinstance(uuid, str) else None, sync="true")
                await publisher.publish(config.input_topic, data, attrs)
                report.published += 1
            total = (body.get("meta") or {}).get("total_count")
            offset += len(records)
            if not records or (isinstance(total, int) and offset >= total):
                break
    except SyncFailed as e:
        report.error = str(e)
    except PublishFailed as e:
        report.error = f"publish_failed: {e}"
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow knowlarity-sync", description=__doc__.split("\n")[0])
    ap.add_argument("--since", default="15m", help="15m, 24h, or an ISO 8601 time (default 15m)")
    ap.add_argument("--dry-run", action="store_true", help="read and count, publish nothing")
    args = ap.parse_args(argv)
    config = load_config()
    since, until = since_time(args.since), datetime.now(UTC)

    async def run() -> int:
        publisher = None if args.dry_run else PubSubPublisher(config.publish_timeout)
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                r = await sync(config, publisher, since, until, http)
        finally:
            if publisher is not None:
                publisher.close()
        print(f"knowlarity: {r.calls} calls from {knowlarity_time(since)} to {knowlarity_time(until)} in "
              f"{r.pages} pages, {r.published} published" + (f"; stopped: {r.error}" if r.error else ""))
        return 1 if r.error else 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
