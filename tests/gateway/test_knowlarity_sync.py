"""``leadflow knowlarity-sync`` against a call-log API stand-in (a real HTTP server answering Knowlarity's
documented envelope, offset paging, a transient error) and the real Pub/Sub emulator."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from gateway import knowlarity_sync
from gateway.publishing import PubSubPublisher
from tests.gateway.conftest import fixture_bytes
from transforms.parsers.base import ParseConfig
from transforms.parsers.registry import parse_payload
from transforms.sources import SourceRegistry

pytestmark = pytest.mark.e2e


@pytest.fixture
def calllog():
    """GET /Basic/v1/account/calllog: {"meta": {...}, "objects": [...]} by limit/offset, keys in headers."""
    base = json.loads(fixture_bytes("knowlarity_call.json"))
    state = {"records": [{**base, "uuid": f"call-{i}"} for i in range(5)], "queries": [], "fail_first": 1,
             "api_key": secrets.token_hex(8), "sr_key": secrets.token_hex(8)}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            state["queries"].append(query)
            if (self.headers.get("x-api-key"), self.headers.get("Authorization")) != (state["api_key"],
                                                                                     state["sr_key"]):
                return self._send(403, {"message": "Forbidden"})
            if state["fail_first"]:
                state["fail_first"] -= 1
                return self._send(502, {"message": "Bad gateway"})
            limit, offset = int(query.get("limit", 10)), int(query.get("offset", 0))
            page = state["records"][offset:offset + 2]  # the API pages smaller than asked: follow offset
            self._send(200, {"meta": {"limit": limit, "offset": offset, "next": "", "previous": "",
                                      "total_count": len(state["records"])}, "objects": page})

        def _send(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/Basic/v1/account/calllog"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def test_knowlarity_time():
    assert knowlarity_sync.knowlarity_time(datetime(2026, 12, 3, 10, 0, tzinfo=UTC)) == "2026-12-03 15:30:00+05:30"


def test_sync_pages_by_offset_and_publishes_each_call(make_config, bus, calllog):
    config = make_config(knowlarity_api_url=calllog["url"], knowlarity_api_key=calllog["api_key"],
                         knowlarity_sr_key=calllog["sr_key"])
    since, until = datetime(2026, 12, 3, 10, 0, tzinfo=UTC), datetime(2026, 12, 3, 10, 15, tzinfo=UTC)

    async def run():
        publisher = PubSubPublisher(5.0)
        try:
            async with httpx.AsyncClient() as http:
                return await knowlarity_sync.sync(config, publisher, since, until, http)
        finally:
            publisher.close()

    report = asyncio.run(run())
    assert (report.pages, report.calls, report.published, report.error) == (3, 5, 5, None)
    assert calllog["queries"][-1]["start_time"] == "2026-12-03 15:30:00+05:30"
    assert calllog["queries"][-1]["end_time"] == "2026-12-03 15:45:00+05:30"
    messages = bus.pull("input", 5)
    assert sorted(m.attributes["call_uuid"] for m in messages) == [f"call-{i}" for i in range(5)]
    parse_config = ParseConfig(SourceRegistry.from_csv())
    for m in messages:
        provider, parsed = parse_payload(m.data.decode(), dict(m.attributes), parse_config)
        assert provider == "knowlarity_call" and parsed[0].phone == "+919876543210"


def test_command_with_wrong_keys_stops_with_the_reason(bus, calllog, monkeypatch, capsys):
    monkeypatch.setenv("LEADFLOW_PROJECT", bus.project)
    monkeypatch.setenv("LEADFLOW_KNOWLARITY_API_URL", calllog["url"])
    monkeypatch.setenv("LEADFLOW_KNOWLARITY_API_KEY", "wrong")
    monkeypatch.setenv("LEADFLOW_KNOWLARITY_SR_KEY", calllog["sr_key"])
    calllog["fail_first"] = 0
    assert knowlarity_sync.main(["--since", "15m"]) == 1
    out = capsys.readouterr().out
    assert "stopped: http_403" in out and calllog["sr_key"] not in out
    monkeypatch.setenv("LEADFLOW_KNOWLARITY_API_KEY", calllog["api_key"])
    assert knowlarity_sync.main(["--since", "15m", "--dry-run"]) == 0
    assert "5 calls" in capsys.readouterr().out
    assert bus.pull("input", 0, timeout=0.5) == []
