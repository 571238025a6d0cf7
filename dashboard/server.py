"""``leadflow dashboard`` (a web service) and ``leadflow report`` (one HTML file): the same page.

    leadflow dashboard --bq_dataset leadflow-local:leadflow [--port 8050] [--refresh 60]
    leadflow report --bq_dataset P:D --out report.html [--date_from 2026-11-16 --date_to ... --source S --team T]

``GET /`` is the page (filters as query parameters: date_from, date_to, source, team; a bad one is a 400 naming
it), ``GET /api/panels`` the same numbers as JSON, ``GET /healthz`` liveness. The page reloads itself every
``--refresh`` seconds with the same filters. BigQuery is the emulator when ``BIGQUERY_EMULATOR_HOST`` is set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from dashboard.data import Filters, load
from dashboard.render import page
from schemas import bigquery as bq
from schemas.resources import DATASET, LOCAL_PROJECT

DEFAULT_PORT = 8050
DEFAULT_REFRESH_S = 60
log = logging.getLogger("leadflow.dashboard")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def create_app(bq_dataset: str, *, refresh_seconds: int = DEFAULT_REFRESH_S, client=None):
    project, dataset = bq.parse_dataset(bq_dataset)
    client = client or bq.client_for(project)
    app = FastAPI(title="Leadflow dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    def filters_of(request: Request) -> Filters:
        q = request.query_params
        return Filters.parse(q.get("date_from"), q.get("date_to"), q.get("source"), q.get("team"))

    @app.get("/healthz")
    def healthz():
        return PlainTextResponse("ok")

    @app.get("/api/panels")
    def panels(request: Request):
        try:
            filters = filters_of(request)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"filters": filters.query_string(), **load(client, project, dataset, filters)})

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        try:
            filters = filters_of(request)
        except ValueError as e:
            return PlainTextResponse(f"bad filter: {e}", status_code=400)
        data = load(client, project, dataset, filters)
        log.info("page filters=%s queries=%.2fs", sorted(filters.query_string()), data["query_seconds"])
        return HTMLResponse(page(data, filters, dataset=f"{project}.{dataset}", generated_at=_now(),
                                 refresh_seconds=refresh_seconds))

    return app


def _dataset_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--bq_dataset", default=f"{LOCAL_PROJECT}:{DATASET}",
                    help="PROJECT:DATASET of the views (default: the local stack's)")


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    ap = argparse.ArgumentParser(prog="leadflow dashboard", description=__doc__.splitlines()[0])
    _dataset_arg(ap)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--refresh", type=int, default=DEFAULT_REFRESH_S, help="seconds between the page's reloads")
    args = ap.parse_args(argv)
    if args.refresh < 5:
        ap.error("--refresh must be at least 5 seconds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = create_app(args.bq_dataset, refresh_seconds=args.refresh)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0


def report(bq_dataset: str, out: Path, filters: Filters, *, client=None) -> dict:
    """Write the page for ``filters`` to ``out`` (no refresh, no form); returns the numbers it shows."""
    project, dataset = bq.parse_dataset(bq_dataset)
    client = client or bq.client_for(project)
    data = load(client, project, dataset, filters)
    out.write_text(page(data, filters, dataset=f"{project}.{dataset}", generated_at=_now(), refresh_seconds=None),
                   encoding="utf-8")
    return data


def report_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow report", description="the dashboard as one self-contained HTML file")
    _dataset_arg(ap)
    ap.add_argument("--out", required=True, type=Path)
    for name in ("date_from", "date_to", "source", "team"):
        ap.add_argument(f"--{name}")
    args = ap.parse_args(argv)
    try:
        filters = Filters.parse(args.date_from, args.date_to, args.source, args.team)
        data = report(args.bq_dataset, args.out, filters)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = sum(len(r) for r in data["panels"].values())
    print(f"wrote {args.out}: {len(data['panels'])} panels, {rows} rows, queries {data['query_seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
