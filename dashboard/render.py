"""The page: each panel's Vega-Lite chart rendered to SVG on the server (vl-convert, no JavaScript, no CDN), its
numbers as a table, and every panel's rows as one JSON block, so the page is self-contained and works offline."""

from __future__ import annotations

import html
import json
import threading
from typing import Any

from dashboard.data import Filters
from dashboard.panels import PANELS, Panel

_RENDER_LOCK = threading.Lock()  # one Vega engine per process; requests render one chart at a time

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #222; background: #fafafa; }
header { position: sticky; top: 0; background: #fafafa; padding: .6rem 0; border-bottom: 1px solid #ddd; }
h1 { font-size: 1.3rem; margin: .2rem 0; } h2 { font-size: 1.05rem; margin: 0 0 .2rem; }
form { display: flex; gap: .8rem; flex-wrap: wrap; align-items: end; } label { font-size: .8rem; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr)); gap: 1rem; margin-top: 1rem; }
.panel { background: white; border: 1px solid #ddd; border-radius: 6px; padding: .8rem; overflow-x: auto; }
.question, .meta, .pending, .filters { font-size: .8rem; color: #555; margin: .2rem 0; }
.pending { color: #8a5a00; } .empty { color: #a00; }
table { border-collapse: collapse; font-size: .75rem; } td, th { border: 1px solid #ddd; padding: 2px 6px; }
"""


def svg(spec: dict) -> str:
    import vl_convert

    with _RENDER_LOCK:
        return vl_convert.vegalite_to_svg(spec)


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in cols) + "</tr>"
        for r in rows)
    return f"<details><summary>numbers ({len(rows)} rows)</summary><table><tr>{head}</tr>{body}</table></details>"


def _panel(panel: Panel, rows: list[dict]) -> str:
    chart = (f'<div class="chart">{svg(panel.chart(rows))}</div>' if rows
             else '<p class="empty">No rows for these filters.</p>')
    pending = f'<p class="pending">Pending: {html.escape(panel.pending)}</p>' if panel.pending else ""
    return (f'<section class="panel" id="panel-{panel.name}" data-panel="{panel.name}" data-rows="{len(rows)}">'
            f"<h2>{html.escape(panel.title)}</h2><p class=\"question\">{html.escape(panel.question)}</p>"
            f'<p class="filters">filters: {", ".join(panel.filters)}</p>{chart}{pending}{_table(rows)}</section>')


def _form(filters: Filters, choices: dict[str, list[str]]) -> str:
    def select(name: str) -> str:
        current = getattr(filters, name)
        options = "".join(
            f'<option value="{html.escape(v)}"{" selected" if v == current else ""}>{html.escape(v)}</option>'
            for v in choices.get(name, []))
        return (f'<label>{name}<br><select name="{name}"><option value="">all</option>{options}</select></label>')

    def day(name: str) -> str:
        value = getattr(filters, name)
        return f'<label>{name}<br><input type="date" name="{name}" value="{value or ""}"></label>'

    return (f'<form method="get" action="/">{day("date_from")}{day("date_to")}{select("source")}{select("team")}'
            '<button type="submit">Apply</button></form>')


def page(data: dict[str, Any], filters: Filters, *, dataset: str, generated_at: str,
         refresh_seconds: int | None) -> str:
    """The whole page. With ``refresh_seconds`` (the service) it reloads itself with the same filters and shows the
    filter form; without (the report file) it shows the filters applied as text."""
    panels = "".join(_panel(p, data["panels"][p.name]) for p in PANELS)
    applied = ", ".join(f"{k}={v}" for k, v in filters.query_string().items()) or "none"
    controls = _form(filters, data["choices"]) if refresh_seconds else f'<p class="meta">filters: {applied}</p>'
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    every = f" · refreshes every {int(refresh_seconds)} s" if refresh_seconds else ""
    blob = json.dumps({"filters": filters.query_string(), **data}, sort_keys=True).replace("<", "\\u003c")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
        f"<title>Leadflow · lead operations</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Leadflow · lead operations</h1>"
        f'<p class="meta">{html.escape(dataset)} · generated {html.escape(generated_at)} · '
        f'queries {data["query_seconds"]:.2f} s{every}</p>{controls}</header>'
        f"<main>{panels}</main>"
        f'<script type="application/json" id="dashboard-data">{blob}</script></body></html>')
