r"""A local stand-in for the Graph API's lead reads, for the local stack and the tests: the real API cannot be
reached from a laptop without a Meta app, so this serves exactly the documented shapes.

* ``GET /{version}/{lead_id}``: the lead object (``id``, ``created_time``, ``field_data``, ``ad_id``, ``form_id``,
  ...; developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving), or the documented error object.
* ``GET /{version}/{form_id}/leads``: the bulk read, ``{"data": [...], "paging": {"cursors": {...}, "next"}}``,
  honouring ``filtering`` on ``time_created`` (GREATER_THAN) and ``limit``.
* The page token as ``Authorization: Bearer`` or the ``access_token`` parameter (Graph takes both); any other token
  gets the documented OAuthException (code 190).

Leads come from memory (tests) or from a directory of ``<lead id>.json`` files, the lead object bytes as Graph
would send them (``leadflow local up`` serves ``<home>/meta-graph/``; the demo writes the sample's Meta leads
there before it sends their webhooks).

    python -m infra.local.graph_stand_in --port 8090 --directory .local/meta-graph \
        --token_file .local/gateway-client.json
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GRAPH_VERSION = "v21.0"
DEFAULT_PAGE_SIZE = 25  # Graph's default page size for edges
INVALID_TOKEN = {"error": {"message": "Invalid OAuth access token - Cannot parse access token",
                           "type": "OAuthException", "code": 190, "fbtrace_id": "AbCdEfGhIjM"}}
UNKNOWN_ID = {"error": {"message": "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded "
                                   "due to missing permissions, or does not support this operation.",
                        "type": "GraphMethodException", "code": 100, "error_subcode": 33, "fbtrace_id": "AqXzUq2c3nK"}}


@dataclass
class GraphStandIn:
    """What the stand-in serves, and what it was asked (``requests``: lead ids read; ``filters``: the ``filtering``
    parameter of each first bulk-read page)."""

    token: str
    directory: Path | None = None
    leads: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)  # served first, one per request
    forms: dict[str, list[list[dict]]] = field(default_factory=dict)  # form id -> explicit pages (bulk read)
    requests: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    url: str = ""

    def add_lead(self, lead_id: str, body: bytes) -> None:
        """Serve ``body`` for ``lead_id`` (written to the directory when there is one, so another process sees it)."""
        if self.directory is None:
            self.leads[lead_id] = body
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{lead_id}.tmp"
        tmp.write_bytes(body)
        tmp.replace(self.directory / f"{lead_id}.json")

    def lead(self, lead_id: str) -> bytes | None:
        if lead_id in self.leads:
            return self.leads[lead_id]
        if self.directory is not None and lead_id.isdigit():
            path = self.directory / f"{lead_id}.json"
            if path.exists():
                return path.read_bytes()
        return None

    def _all_leads(self) -> list[dict]:
        bodies = list(self.leads.values())
        if self.directory is not None and self.directory.exists():
            bodies += [p.read_bytes() for p in sorted(self.directory.glob("*.json"))]
        out = []
        for body in bodies:
            try:
                obj = json.loads(body)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def form_pages(self, form_id: str, since: int | None, limit: int) -> list[list[dict]]:
        if form_id in self.forms:
            return self.forms[form_id]
        leads = [lead for lead in self._all_leads() if str(lead.get("form_id")) == form_id
                 and (since is None or unix_time(lead.get("created_time")) > since)]
        leads.sort(key=lambda lead: unix_time(lead.get("created_time")), reverse=True)  # Graph: newest first
        return [leads[i:i + limit] for i in range(0, len(leads), limit)] or [[]]


def unix_time(created_time: object) -> int:
    """Graph's ``created_time`` (``2026-11-16T09:33:04+0000``) as Unix seconds; 0 when unreadable."""
    try:
        return int(datetime.strptime(str(created_time), "%Y-%m-%dT%H:%M:%S%z").timestamp())
    except ValueError:
        return 0


def _since(filtering: list[str]) -> int | None:
    for text in filtering:
        try:
            rules = json.loads(text)
        except ValueError:
            continue
        for rule in rules if isinstance(rules, list) else ():
            if isinstance(rule, dict) and (rule.get("field"), rule.get("operator")) == ("time_created", "GREATER_THAN"):
                try:
                    return int(rule.get("value"))
                except (TypeError, ValueError):
                    return None
    return None


def _handler(stand_in: GraphStandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # request lines name lead ids only, but keep test and stack logs clean
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parsed = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parsed.query)
            parts = [p for p in parsed.path.split("/") if p]
            lead_id = parts[-1] if parts else ""
            stand_in.requests.append(lead_id)
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if stand_in.token not in (bearer, *query.get("access_token", [])):
                return self._send(400, json.dumps(INVALID_TOKEN).encode())
            if lead_id == "leads" and len(parts) >= 2:
                return self._bulk_read(parts[-2], query)
            queued = stand_in.failures.get(lead_id)
            if queued:
                return self._send(*queued.pop(0))
            body = stand_in.lead(lead_id)
            if body is not None:
                return self._send(200, body)
            error = json.loads(json.dumps(UNKNOWN_ID))
            error["error"]["message"] = error["error"]["message"].format(id=lead_id[:40])
            return self._send(400, json.dumps(error).encode())

        def _bulk_read(self, form_id: str, query: dict) -> None:
            if "after" not in query:
                stand_in.filters.extend(query.get("filtering", []))
            queued = stand_in.failures.get(f"{form_id}/leads")
            if queued:
                return self._send(*queued.pop(0))
            limit = int(query.get("limit", [DEFAULT_PAGE_SIZE])[0] or DEFAULT_PAGE_SIZE)
            filtering = query.get("filtering", [])
            pages = stand_in.form_pages(form_id, _since(filtering), max(1, limit))
            index = int(query.get("after", ["0"])[0])
            page = pages[index] if index < len(pages) else []
            body: dict = {"data": page, "paging": {"cursors": {"before": str(index), "after": str(index + 1)}}}
            if index + 1 < len(pages):
                extra = {"filtering": filtering[0]} if filtering else {}
                body["paging"]["next"] = (f"{stand_in.url}/{form_id}/leads?"
                                          + urllib.parse.urlencode({"limit": limit, "after": index + 1, **extra}))
            return self._send(200, json.dumps(body).encode())

    return Handler


def serve(stand_in: GraphStandIn, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve in a daemon thread; ``stand_in.url`` is set to the versioned base URL. ``.shutdown()`` stops it."""
    server = ThreadingHTTPServer((host, port), _handler(stand_in))
    stand_in.url = f"http://{host}:{server.server_address[1]}/{GRAPH_VERSION}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--directory", required=True, help="the lead objects served, one <lead id>.json each")
    ap.add_argument("--token_file", required=True,
                    help="a JSON file whose meta_page_access_token is the page token to accept (the gateway's)")
    args = ap.parse_args(argv)
    token = json.loads(Path(args.token_file).read_text())["meta_page_access_token"]
    stand_in = GraphStandIn(token=token, directory=Path(args.directory))
    server = ThreadingHTTPServer((args.host, args.port), _handler(stand_in))
    stand_in.url = f"http://{args.host}:{args.port}/{GRAPH_VERSION}"
    print(f"Graph API stand-in on {stand_in.url}, leads from {args.directory}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
