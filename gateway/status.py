"""What became of a message the gateway published: the pipeline's outcome, read from BigQuery.

``GET /v1/leads/status/{message_id}`` answers from the pipeline's own tables (``lead_events``: one row per unit that
became part of a lead, ``dead_letters``: one row per unit that did not), so it says what the pipeline decided, not
what the gateway hoped: ``new`` with the lead id, a duplicate (``duplicate_same_source``, ``cross_source``,
``replay``) with the lead it belongs to, ``dead_letter`` with the stage and error type, or ``pending`` while neither
table has the message yet. An upload's rows are units ``<message id>#<row>``: each is listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

MAX_UNITS = 1000  # units listed for one message (an upload of more rows is cut, and says so)


class LeadStatusReader(Protocol):
    def lookup(self, message_id: str) -> dict: ...


def status_of(message_id: str, events: Iterable[dict], dead_letters: Iterable[dict]) -> dict:
    """The answer for ``message_id`` from its ``lead_events`` and ``dead_letters`` rows (pure)."""
    units: dict[str, dict] = {}
    for e in events:
        units.setdefault(e["message_id"], {"unit": e["message_id"], "outcome": e["outcome"], "lead_id": e["lead_id"]})
    for d in dead_letters:
        units.setdefault(d["message_id"], {"unit": d["message_id"], "outcome": "dead_letter", "stage": d["stage"],
                                           "error_type": d["error_type"]})
    listed = sorted(units.values(), key=lambda u: u["unit"])[:MAX_UNITS]
    if not listed:
        return {"message_id": message_id, "status": "pending"}
    if len(listed) == 1 and listed[0]["unit"] == message_id:
        return {"message_id": message_id, "status": "processed", **{k: v for k, v in listed[0].items() if k != "unit"}}
    return {"message_id": message_id, "status": "processed", "units": listed, "truncated": len(units) > MAX_UNITS}


class BigQueryLeadStatus:
    """Reads the two tables of ``project:dataset`` (real BigQuery, or the emulator at ``BIGQUERY_EMULATOR_HOST``)."""

    def __init__(self, dataset: str):
        from schemas.bigquery import client_for, parse_dataset

        self.project, name = parse_dataset(dataset)
        self.tables = f"{self.project}.{name}"
        self._client_for = client_for
        self._client = None

    def _query(self, sql: str, message_id: str) -> list[dict]:
        from google.cloud import bigquery

        if self._client is None:
            self._client = self._client_for(self.project)
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("m", "STRING", message_id),
            bigquery.ScalarQueryParameter("prefix", "STRING", message_id + "#")])
        return [dict(row.items()) for row in self._client.query(sql, job_config=config).result()]

    def lookup(self, message_id: str) -> dict:
        where = f"WHERE message_id = @m OR STARTS_WITH(message_id, @prefix) LIMIT {MAX_UNITS + 1}"
        events = self._query(f"SELECT message_id, outcome, lead_id FROM `{self.tables}.lead_events` {where}",
                             message_id)
        dead = self._query(f"SELECT message_id, stage, error_type FROM `{self.tables}.dead_letters` {where}",
                           message_id)
        return status_of(message_id, events, dead)
