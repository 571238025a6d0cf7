"""The dashboard's numbers: each panel's query run with the filters, rows as plain JSON-able dicts."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dashboard.panels import BY_NAME, PANELS
from schemas import bigquery as bq

_PARAM_TYPES = {"date_from": "DATE", "date_to": "DATE", "source": "STRING", "team": "STRING"}


@dataclass(frozen=True)
class Filters:
    """Date range (inclusive, UTC days), source and team; None means all."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    source: str | None = None
    team: str | None = None

    @classmethod
    def parse(cls, date_from: str | None = None, date_to: str | None = None, source: str | None = None,
              team: str | None = None) -> Filters:
        """From text (a form, the command line); ValueError names the bad field."""

        def day(name: str, text: str | None) -> dt.date | None:
            if not text or not text.strip():
                return None
            try:
                return dt.date.fromisoformat(text.strip())
            except ValueError:
                raise ValueError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None

        def name(field: str, text: str | None) -> str | None:
            text = (text or "").strip()
            if len(text) > 200:
                raise ValueError(f"{field} is longer than 200 characters")
            return text or None

        out = cls(day("date_from", date_from), day("date_to", date_to), name("source", source), name("team", team))
        if out.date_from and out.date_to and out.date_from > out.date_to:
            raise ValueError(f"date_from {out.date_from} is after date_to {out.date_to}")
        return out

    def query_string(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def run_query(client, project: str, dataset: str, panel, filters: Filters) -> list[dict]:
    """The rows of a panel's query (before its ``derive``)."""
    from google.cloud import bigquery

    params = [bigquery.ScalarQueryParameter(p, _PARAM_TYPES[p], getattr(filters, p)) for p in panel.parameters()]
    sql = bq.render(panel.sql, project, dataset)
    return [{k: _plain(v) for k, v in row.items()} for row in client.query(
        sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()]


def run_panel(client, project: str, dataset: str, name: str, filters: Filters) -> list[dict]:
    panel = BY_NAME[name]
    rows = run_query(client, project, dataset, panel, filters)
    return panel.derive(rows) if panel.derive else rows


CHOICES = {
    "source": "SELECT DISTINCT source_id AS v FROM `{project}.{dataset}.daily_leads_by_source` ORDER BY v",
    "team": "SELECT DISTINCT team AS v FROM `{project}.{dataset}.lead_assignments` WHERE team IS NOT NULL ORDER BY v",
}
QUERY_THREADS = 4  # BigQuery answers each query in about a second: run the panels' queries side by side


def load(client, project: str, dataset: str, filters: Filters) -> dict[str, Any]:
    """Every panel's rows, the filter choices (sources, teams) and how long the queries took."""
    started = time.monotonic()
    with ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="dashboard-query") as pool:
        queries = {}  # panels that share a query run it once
        for p in PANELS:
            queries.setdefault(p.sql, pool.submit(run_query, client, project, dataset, p, filters))
        choices = {k: pool.submit(lambda sql: [r["v"] for r in client.query(bq.render(sql, project, dataset)).result()],
                                  sql) for k, sql in CHOICES.items()}
        panels = {p.name: (p.derive(queries[p.sql].result()) if p.derive else queries[p.sql].result())
                  for p in PANELS}
        choices = {k: f.result() for k, f in choices.items()}
    return {"panels": panels, "choices": choices, "query_seconds": round(time.monotonic() - started, 3)}
