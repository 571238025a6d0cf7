"""The dashboard's panels: one question each, one GoogleSQL query over the views, one chart.

Every query reads the BigQuery views of ``schemas/views/`` (or, where no view exists yet, the tables they are built
from) and names them ``{project}.{dataset}.<name>``, replaced by :func:`schemas.bigquery.render`, so the emulator and
real BigQuery run the same SQL. Filters are query parameters (``@date_from``, ``@date_to``, ``@source``, ``@team``),
NULL meaning "all"; a panel says which filters apply to it (dead letters have no source, overlap is all time).

Hooks for the routing issue (17, built beside this one): the routing queue and agent load are computed from what the
tables hold now (``leads_current``: leads waiting for an agent's acceptance or in manual review; agents' open leads).
The routing queue and agent load read the desk's own records (issue 17): the ``queued`` status of the living
record, the queue's age from ``lead_assignments``, and each agent's ``max_open`` cap from the routing audit (the
``decision`` column records it on every offer). :data:`NOTES` says where each number comes from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FILTERS = ("date", "source", "team")
_P = "`{project}.{dataset}"  # closed by the name: f"{_P}.leads_current`"


def _dates(column: str) -> str:
    return f"(@date_from IS NULL OR {column} >= @date_from) AND (@date_to IS NULL OR {column} <= @date_to)"


def _is(param: str, column: str) -> str:
    return f"(@{param} IS NULL OR {column} = @{param})"


Spec = dict[str, Any]


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    question: str
    sql: str  # GoogleSQL with {project}/{dataset} and the filter parameters
    filters: tuple[str, ...]
    chart: Callable[[list[dict]], Spec]  # rows -> Vega-Lite spec (data inlined)
    pending: str | None = None  # what a later issue adds to this panel
    derive: Callable[[list[dict]], list[dict]] | None = None  # the query's rows -> the panel's (a shared query)

    def parameters(self) -> list[str]:
        """The query parameters this panel's SQL uses (only those are sent)."""
        return sorted(set(re.findall(r"@([a-z_]+)", self.sql)))


def _bar(x: str, y: str, color: str, *, x_type: str = "nominal", title_y: str | None = None,
         x_sort: list[str] | None = None) -> Callable:
    def spec(rows: list[dict]) -> Spec:
        return {
            "data": {"values": rows}, "mark": {"type": "bar", "tooltip": True}, "width": 520, "height": 240,
            "encoding": {
                "x": {"field": x, "type": x_type, "title": x.replace("_", " "), "sort": x_sort or "ascending"},
                "y": {"field": y, "type": "quantitative", "title": title_y or y.replace("_", " ")},
                "color": {"field": color, "type": "nominal", "title": color.replace("_", " ")},
            },
        }
    return spec


def _overlap(rows: list[dict]) -> Spec:
    return {
        "data": {"values": rows}, "width": 360, "height": 360,
        "encoding": {
            "x": {"field": "source_b", "type": "nominal", "title": "also sent by"},
            "y": {"field": "source_a", "type": "nominal", "title": "people of"},
        },
        "layer": [
            {"mark": {"type": "rect", "tooltip": True},
             "encoding": {"color": {"field": "shared_people", "type": "quantitative", "title": "shared people"}}},
            {"mark": {"type": "text", "fontSize": 10},
             "encoding": {"text": {"field": "shared_people", "type": "quantitative"}}},
        ],
    }


def _speed(rows: list[dict]) -> Spec:
    long = [
        {"lead_date": r["lead_date"], "team": r["team"], "measure": label, "seconds": r[column]}
        for r in rows for column, label in SPEED_MEASURES.items() if r[column] is not None
    ]
    return {
        "data": {"values": long},
        "facet": {"field": "measure", "type": "nominal", "title": None, "sort": list(SPEED_MEASURES.values())},
        "columns": 2,
        "spec": {
            "width": 230, "height": 150, "mark": {"type": "line", "point": True, "tooltip": True},
            "encoding": {
                "x": {"field": "lead_date", "type": "ordinal", "title": "day"},
                "y": {"field": "seconds", "type": "quantitative", "title": "seconds"},
                "color": {"field": "team", "type": "nominal"},
            },
        },
        "resolve": {"scale": {"y": "independent"}},
    }


def _funnel(rows: list[dict]) -> Spec:
    return {
        "data": {"values": rows}, "width": 520, "height": 200,
        "encoding": {
            "y": {"field": "stage", "type": "nominal", "sort": None, "title": None},
            "x": {"field": "count", "type": "quantitative", "title": "count"},
        },
        "layer": [
            {"mark": {"type": "bar", "tooltip": True}},
            {"mark": {"type": "text", "align": "left", "dx": 3}, "encoding": {"text": {"field": "count"}}},
        ],
    }


SPEED_MEASURES = {
    "p50_to_assignment_s": "first offer p50",
    "p90_to_assignment_s": "first offer p90",
    "p50_to_acceptance_s": "acceptance p50",
    "p90_to_acceptance_s": "acceptance p90",
}
FUNNEL_STAGES = ("events", "persons", "leads", "offered", "accepted")

NOTES = {
    "routing_queue": "queued: waiting for a free agent (its desk's queue), assigned: offered and awaiting the agent's "
                     "answer, manual_review: routed to a person; oldest_queued_at is when the team's longest-waiting "
                     "queued lead entered the queue (lead_assignments).",
    "agent_load": "open leads (offered or accepted) per agent beside the agent's max_open cap, as the routing audit "
                  "recorded it on the agent's offers (lead_assignments.decision).",
}

# The people now, grouped as the routing queue, agent load and funnel need them: one evaluation of the leads_current
# view serves the three panels (it is the dashboard's costliest query; data.load runs a shared query once).
LEADS_NOW = f"""WITH people AS (
  SELECT lead_id, status, team, agent_id, events, is_test
  FROM {_P}.leads_current`
  WHERE status != 'merged'
    AND {_dates("DATE(first_seen_at)")} AND {_is("source", "primary_source")} AND {_is("team", "team")}
),
steps AS (
  SELECT lead_id, COUNTIF(action = 'assigned') AS offers, COUNTIF(action = 'accepted') AS acceptances,
    MAX(IF(action = 'queued', action_at, NULL)) AS queued_at
  FROM {_P}.lead_assignments`
  GROUP BY lead_id
),
caps AS (
  SELECT agent_id, MAX(CAST(JSON_VALUE(decision, '$.max_open') AS INT64)) AS max_open
  FROM {_P}.lead_assignments`
  WHERE agent_id IS NOT NULL AND JSON_VALUE(decision, '$.max_open') IS NOT NULL
  GROUP BY agent_id
)
SELECT p.status, p.team, p.agent_id, p.is_test, c.max_open, COUNT(*) AS people, SUM(p.events) AS events,
  COUNTIF(IFNULL(s.offers, 0) > 0) AS offered, COUNTIF(IFNULL(s.acceptances, 0) > 0) AS accepted,
  MIN(IF(p.status = 'queued', s.queued_at, NULL)) AS oldest_queued_at
FROM people AS p
LEFT JOIN steps AS s ON s.lead_id = p.lead_id
LEFT JOIN caps AS c ON c.agent_id = p.agent_id
GROUP BY p.status, p.team, p.agent_id, p.is_test, c.max_open"""


def nulls_first(*values) -> tuple:
    """A sort key that orders like SQL's ascending ORDER BY (NULL first)."""
    return tuple((v is not None, v if v is not None else "") for v in values)


def _sum_by(rows: list[dict], key: tuple[str, ...], keep: Callable[[dict], bool], measure: str) -> list[dict]:
    acc: dict[tuple, int] = {}
    for r in rows:
        if keep(r):
            k = tuple(r[c] for c in key)
            acc[k] = acc.get(k, 0) + int(r["people"])
    ordered = sorted(acc.items(), key=lambda kv: nulls_first(*kv[0]))
    return [dict(zip(key, k, strict=True)) | {measure: n} for k, n in ordered]


WAITING = ("queued", "assigned", "manual_review")


def routing_queue(rows: list[dict]) -> list[dict]:
    """Leads waiting for an agent (queued), for an agent's answer (assigned) or in manual review, per team and
    status, with when the longest-waiting queued lead of the team entered the queue (test leads left out)."""
    keep = [r for r in rows if r["status"] in WAITING and not r["is_test"]]
    oldest: dict = {}
    for r in keep:
        if r["oldest_queued_at"] is not None:
            oldest[r["team"]] = min(oldest.get(r["team"], r["oldest_queued_at"]), r["oldest_queued_at"])
    return [row | {"oldest_queued_at": oldest.get(row["team"]) if row["status"] == "queued" else None}
            for row in _sum_by(keep, ("team", "status"), lambda r: True, "leads")]


def agent_load(rows: list[dict]) -> list[dict]:
    """Open leads (assigned or accepted) per team and agent, with the agent's cap (test leads left out)."""
    keep = [r for r in rows if r["status"] in ("assigned", "accepted") and r["agent_id"] is not None
            and not r["is_test"]]
    caps = {r["agent_id"]: r["max_open"] for r in keep}
    return [row | {"max_open": caps[row["agent_id"]]}
            for row in _sum_by(keep, ("team", "agent_id"), lambda r: True, "open_leads")]


def funnel(rows: list[dict]) -> list[dict]:
    """Events -> persons -> leads (not test) -> offered -> accepted, one row per stage in funnel order."""
    real = [r for r in rows if not r["is_test"]]
    counts = {"events": sum(int(r["events"] or 0) for r in rows), "persons": sum(int(r["people"]) for r in rows),
              "leads": sum(int(r["people"]) for r in real), "offered": sum(int(r["offered"]) for r in real),
              "accepted": sum(int(r["accepted"]) for r in real)}
    return funnel_rows(counts)


PANELS: tuple[Panel, ...] = (
    Panel(
        "new_leads", "New leads per source and day",
        "How many new people did each source send per day (daily_leads_by_source.new_leads)?",
        f"""SELECT received_date, source_id, SUM(new_leads) AS new_leads, SUM(events) AS events
FROM {_P}.daily_leads_by_source`
WHERE {_dates("received_date")} AND {_is("source", "source_id")}
GROUP BY received_date, source_id
ORDER BY received_date, source_id""",
        ("date", "source"), _bar("received_date", "new_leads", "source_id", x_type="ordinal"),
    ),
    Panel(
        "provider_overlap", "Provider overlap",
        "Which sources send the same people (provider_overlap, all time, the diagonal left out)?",
        f"""SELECT source_a, source_b, shared_people, source_a_first, share_of_source_a
FROM {_P}.provider_overlap`
WHERE source_a != source_b AND (@source IS NULL OR source_a = @source OR source_b = @source)
ORDER BY source_a, source_b""",
        ("source",), _overlap,
    ),
    Panel(
        "speed_to_lead", "Speed to lead",
        "Seconds from the lead's event to its first offer and to acceptance, p50/p90 per team and day "
        "(speed_to_lead).",
        f"""SELECT lead_date, team, leads_assigned, leads_accepted, p50_to_assignment_s, p90_to_assignment_s,
  p50_to_acceptance_s, p90_to_acceptance_s
FROM {_P}.speed_to_lead`
WHERE {_dates("lead_date")} AND {_is("team", "team")}
ORDER BY lead_date, team""",
        ("date", "team"), _speed,
    ),
    Panel(
        "dead_letters", "Dead letters by stage and reason",
        "What was rejected, where and why (dead_letters_daily)?",
        f"""SELECT stage, error_type, SUM(dead_letters) AS dead_letters, SUM(distinct_messages) AS messages
FROM {_P}.dead_letters_daily`
WHERE {_dates("failed_date")}
GROUP BY stage, error_type
ORDER BY stage, error_type""",
        ("date",), _bar("stage", "dead_letters", "error_type"),
    ),
    Panel(
        "score_mix", "Score mix by tier and scorer",
        "How many leads are hot, warm or cold, scored by the model or the fallback (score_distribution)?",
        f"""SELECT priority_tier, score_source, SUM(leads) AS leads
FROM {_P}.score_distribution`
WHERE {_dates("lead_date")} AND {_is("source", "primary_source")}
GROUP BY priority_tier, score_source
ORDER BY priority_tier, score_source""",
        ("date", "source"), _bar("priority_tier", "leads", "score_source", x_sort=["hot", "warm", "cold", "unscored"]),
    ),
    Panel(
        "routing_queue", "Routing queue and manual review",
        "Which leads wait in a desk's queue, for an agent's answer or for manual review, per team (leads_current)?",
        LEADS_NOW, FILTERS, _bar("team", "leads", "status"), NOTES["routing_queue"], routing_queue,
    ),
    Panel(
        "agent_load", "Agent load",
        "How many open leads (assigned or accepted) does each agent hold now, against its cap (leads_current)?",
        LEADS_NOW, FILTERS, _bar("agent_id", "open_leads", "team"), NOTES["agent_load"], agent_load,
    ),
    Panel(
        "funnel", "Funnel",
        "Of the lead events, how many people, real (not test) leads, leads offered to an agent and leads accepted? "
        "(leads_current after merges, lead_assignments)",
        LEADS_NOW, FILTERS, _funnel, None, funnel,
    ),
)

BY_NAME = {p.name: p for p in PANELS}


def funnel_rows(row: dict) -> list[dict]:
    """The funnel query's one row -> one row per stage, in funnel order (what the chart and the page show)."""
    return [{"stage": stage, "count": int(row[stage] or 0)} for stage in FUNNEL_STAGES]
