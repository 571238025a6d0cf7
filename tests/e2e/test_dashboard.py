"""The dashboard's numbers equal the views' on the sample run (no browser).

Each panel's rows (``dashboard.data.load``, what the page charts and embeds) are recomputed here in Python from
``SELECT *`` of the views (and the lead_assignments rows the funnel counts), unfiltered and with a date range, a
source and a team, so a wrong column, grouping or filter in a panel's SQL fails a test. The page and the report are
checked for what they embed: the same numbers, one SVG chart per panel with rows, nothing loaded from outside.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from dashboard import data as dash
from dashboard import panels as dpanels
from dashboard import render, server
from tests.helpers.bigquery import PROJECT
from tests.helpers.sample_run import SAMPLE

pytestmark = pytest.mark.e2e


def view(run, name: str) -> list[dict]:
    sql = f"SELECT * FROM `{PROJECT}.{run.dataset}.{name}`"
    return [{k: dash._plain(v) for k, v in r.items()} for r in run.client.query(sql).result()]


def in_range(day: str | None, f: dash.Filters) -> bool:
    return ((f.date_from is None or day >= f.date_from.isoformat())
            and (f.date_to is None or day <= f.date_to.isoformat()))


def want_source(value, f: dash.Filters) -> bool:
    return f.source is None or value == f.source


def want_team(value, f: dash.Filters) -> bool:
    return f.team is None or value == f.team


def sums(rows, key, measures) -> list[dict]:
    acc: dict[tuple, Counter] = defaultdict(Counter)
    for r in rows:
        for m in measures:
            acc[tuple(r[k] for k in key)][m] += r[m]
    return [dict(zip(key, k, strict=True)) | dict(v) for k, v in sorted(acc.items())]


def expected(run, f: dash.Filters) -> dict[str, list[dict]]:
    daily = [r for r in view(run, "daily_leads_by_source")
             if in_range(r["received_date"], f) and want_source(r["source_id"], f)]
    overlap = [r for r in view(run, "provider_overlap") if r["source_a"] != r["source_b"]
               and (f.source is None or f.source in (r["source_a"], r["source_b"]))]
    speed = [r for r in view(run, "speed_to_lead") if in_range(r["lead_date"], f) and want_team(r["team"], f)]
    dead = [r for r in view(run, "dead_letters_daily") if in_range(r["failed_date"], f)]
    scores = [r for r in view(run, "score_distribution")
              if in_range(r["lead_date"], f) and want_source(r["primary_source"], f)]
    current = [r for r in view(run, "leads_current") if in_range(r["first_seen_at"][:10], f)
               and want_source(r["primary_source"], f) and want_team(r["team"], f)]
    queue = Counter((r["team"], r["status"]) for r in current
                    if r["status"] in ("queued", "assigned", "manual_review") and not r["is_test"])
    load = Counter((r["team"], r["agent_id"]) for r in current
                   if r["status"] in ("assigned", "accepted") and r["agent_id"] and not r["is_test"])
    queued_at: dict = defaultdict(list)  # lead -> when it entered a queue
    caps: dict = defaultdict(list)  # agent -> the caps the routing audit recorded on its offers
    for a in run.tables["lead_assignments"]:
        if a["action"] == "queued":  # as the page writes times: ISO 8601 with +00:00
            queued_at[a["lead_id"]].append(datetime.fromisoformat(a["action_at"].replace("Z", "+00:00")).isoformat())
        decision = json.loads(a["decision"]) if a.get("decision") else {}
        if a["agent_id"] and "max_open" in decision:
            caps[a["agent_id"]].append(decision["max_open"])
    oldest: dict = {}
    for r in current:
        if r["status"] == "queued" and not r["is_test"] and queued_at[r["lead_id"]]:
            at = max(queued_at[r["lead_id"]])
            oldest[r["team"]] = min(oldest.get(r["team"], at), at)
    people = [r for r in current if r["status"] != "merged"]
    actions = defaultdict(set)
    for a in run.tables["lead_assignments"]:
        actions[a["lead_id"]].add(a["action"])
    real = [r for r in people if not r["is_test"]]
    speed_cols = ("lead_date", "team", "leads_assigned", "leads_accepted", *dpanels.SPEED_MEASURES)
    return {
        "new_leads": sums(daily, ("received_date", "source_id"), ("new_leads", "events")),
        "provider_overlap": sorted(
            ({k: r[k] for k in ("source_a", "source_b", "shared_people", "source_a_first", "share_of_source_a")}
             for r in overlap), key=lambda r: (r["source_a"], r["source_b"])),
        "speed_to_lead": sorted(({k: r[k] for k in speed_cols} for r in speed),
                                key=lambda r: (r["lead_date"], r["team"])),
        "dead_letters": [{"stage": r["stage"], "error_type": r["error_type"], "dead_letters": r["dead_letters"],
                          "messages": r["distinct_messages"]}
                         for r in sums(dead, ("stage", "error_type"), ("dead_letters", "distinct_messages"))],
        "score_mix": sums(scores, ("priority_tier", "score_source"), ("leads",)),
        "routing_queue": [{"team": t, "status": s, "leads": n,
                           "oldest_queued_at": oldest.get(t) if s == "queued" else None}
                          for (t, s), n in sorted(queue.items(), key=lambda kv: dpanels.nulls_first(*kv[0]))],
        "agent_load": [{"team": t, "agent_id": a, "open_leads": n, "max_open": max(caps[a]) if caps[a] else None}
                       for (t, a), n in sorted(load.items(), key=lambda kv: dpanels.nulls_first(*kv[0]))],
        "funnel": dpanels.funnel_rows({
            "events": sum(r["events"] for r in people), "persons": len(people), "leads": len(real),
            "offered": sum(1 for r in real if "assigned" in actions[r["lead_id"]]),
            "accepted": sum(1 for r in real if "accepted" in actions[r["lead_id"]])}),
    }


def approx(panels: dict[str, list[dict]]) -> dict[str, list[dict]]:
    return {name: [{k: pytest.approx(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
            for name, rows in panels.items()}


def test_every_panel_equals_the_views_on_the_sample_run(sample_landed):
    run = sample_landed
    got = dash.load(run.client, PROJECT, run.dataset, dash.Filters())
    assert set(got["panels"]) == {p.name for p in dpanels.PANELS}
    want = expected(run, dash.Filters())
    for name in want:
        assert got["panels"][name] == approx(want)[name], name
        assert got["panels"][name], f"{name}: the sample run leaves this panel empty"
    # the funnel against the manifest: every person of the sample, each event once
    manifest = json.loads(SAMPLE.with_name(SAMPLE.name + ".manifest.json").read_text())
    funnel = {r["stage"]: r["count"] for r in got["panels"]["funnel"]}
    assert funnel["persons"] == manifest["persons"] and funnel["events"] == manifest["lead_events"]
    assert funnel["events"] >= funnel["persons"] >= funnel["leads"] >= funnel["offered"] >= funnel["accepted"] > 0
    assert "api" in got["choices"]["source"] and got["choices"]["team"]
    # scored in-process by the model: the score mix has model-scored tiers
    assert {r["score_source"] for r in got["panels"]["score_mix"]} == {"model"}
    assert {r["priority_tier"] for r in got["panels"]["score_mix"]} >= {"hot", "warm", "cold"} - {"none"}


def test_filters_narrow_every_panel_they_apply_to(sample_landed):
    run = sample_landed
    everything = dash.load(run.client, PROJECT, run.dataset, dash.Filters())["panels"]
    days = sorted({r["received_date"] for r in everything["new_leads"]})
    team = everything["routing_queue"][0]["team"]
    for f in (dash.Filters.parse(days[1], days[1]), dash.Filters.parse(source="meta_lead_ads"),
              dash.Filters.parse(team=team), dash.Filters.parse(days[0], days[-2], "api", team)):
        got = dash.load(run.client, PROJECT, run.dataset, f)["panels"]
        assert got == approx(expected(run, f)), f
        for panel in dpanels.PANELS:  # a filter that applies changes the numbers (the sample spans every filter)
            if set(panel.filters) & {k.split("_")[0] for k in f.query_string()} and panel.name != "provider_overlap":
                assert got[panel.name] != everything[panel.name], (f, panel.name)


def test_bad_filters_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="date_from '2026-13-01' is not a date"):
        dash.Filters.parse("2026-13-01")
    with pytest.raises(ValueError, match="is after date_to"):
        dash.Filters.parse("2026-11-18", "2026-11-16")


def test_the_page_and_the_report_embed_the_same_numbers_and_load_nothing_from_outside(sample_landed, tmp_path):
    run = sample_landed
    app = server.create_app(run.bq_dataset, refresh_seconds=30, client=run.client)
    with TestClient(app) as http:
        assert http.get("/healthz").text == "ok"
        assert http.get("/?date_from=yesterday").status_code == 400
        api = http.get("/api/panels", params={"source": "api"}).json()
        page = http.get("/", params={"source": "api"})
    assert page.status_code == 200
    want = dash.load(run.client, PROJECT, run.dataset, dash.Filters(source="api"))
    assert api["panels"] == want["panels"]
    html = page.text
    embedded = json.loads(re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', html,
                                    re.S).group(1))
    assert embedded["panels"] == want["panels"] and embedded["filters"] == {"source": "api"}
    assert '<meta http-equiv="refresh" content="30">' in html
    for panel in dpanels.PANELS:
        section = re.search(rf'<section[^>]*data-panel="{panel.name}"[^>]*>(.*?)</section>', html, re.S).group(1)
        assert ("<svg" in section) == bool(want["panels"][panel.name]), panel.name
    out = tmp_path / "report.html"
    numbers = server.report(run.bq_dataset, out, dash.Filters(), client=run.client)
    text = out.read_text()
    assert "http-equiv" not in text and text.count("<svg") == sum(1 for r in numbers["panels"].values() if r)
    # self-contained: no script, stylesheet, image or font fetched from anywhere (xmlns names are not requests)
    assert not re.search(r'(src|href)\s*=\s*"(?!#)', text), "a resource fetched by the page"
    assert not re.search(r"url\((?!#)|@import", text), "a stylesheet resource"  # url(#gradient) is the chart's own
    assert render.svg(dpanels.BY_NAME["funnel"].chart(numbers["panels"]["funnel"])).startswith("<svg")
