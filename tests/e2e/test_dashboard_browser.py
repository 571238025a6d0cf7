"""The dashboard in a real browser: ``leadflow dashboard`` as its own process over the sample run in the BigQuery
emulator, opened in headless Chromium (Debian's package, installed when missing) over the DevTools protocol. Every
chart is drawn with marks, the numbers the page carries equal the views', no request leaves loopback, the page
reloads itself, and a screenshot is saved (set LEADFLOW_SCREENSHOT_TO=docs/img/dashboard.png to refresh the README's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from dashboard import data as dash
from dashboard.panels import PANELS
from infra.local.processes import free_port, stop_process
from schemas import bigquery as bq
from tests.e2e.test_dashboard import approx, expected
from tests.helpers.browser import Page, chromium_or_skip

pytestmark = pytest.mark.e2e
REFRESH_S = 5

PANELS_JS = """[...document.querySelectorAll('section.panel')].map(s => {
  const svg = s.querySelector('svg');
  return {name: s.dataset.panel, rows: Number(s.dataset.rows), marks: s.querySelectorAll('svg .role-mark > *').length,
          width: svg ? svg.getBoundingClientRect().width : 0, height: svg ? svg.getBoundingClientRect().height : 0};
})"""


@pytest.fixture(scope="module")
def dashboard_url(sample_landed, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    env = {**os.environ, bq.EMULATOR_HOST_ENV: sample_landed.host_port}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dashboard", "--bq_dataset", sample_landed.bq_dataset,
                                 "--port", str(port), "--refresh", str(REFRESH_S)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, timeout=10)


def test_the_page_renders_every_chart_with_the_views_numbers_and_stays_on_loopback(
        sample_landed, dashboard_url, tmp_path):
    page = Page(chromium_or_skip())
    try:
        page.open(dashboard_url)
        panels = {p["name"]: p for p in page.evaluate(PANELS_JS)}
        embedded = page.evaluate("JSON.parse(document.getElementById('dashboard-data').textContent)")
        want = expected(sample_landed, dash.Filters())
        assert set(panels) == {p.name for p in PANELS}
        for name, p in panels.items():
            assert p["rows"] == len(want[name]) > 0, name
            assert p["marks"] > 0 and p["width"] > 100 and p["height"] > 100, (name, p)  # drawn, with data
        assert embedded["panels"] == approx(want)
        # the funnel's table as a person reads it
        cells = page.evaluate("[...document.querySelectorAll('#panel-funnel td')].map(td => td.textContent)")
        assert cells == [str(v) for r in want["funnel"] for v in (r["stage"], r["count"])]
        shot = page.screenshot(tmp_path / "dashboard.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if os.environ.get("LEADFLOW_SCREENSHOT_TO"):
            shutil.copyfile(shot, os.environ["LEADFLOW_SCREENSHOT_TO"])
        # it reloads itself with the same filters
        mark = len(page.events)
        page.wait_for("Page.loadEventFired", timeout=REFRESH_S + 60, after=mark)
        urls = page.requested_urls()
        assert urls.count(dashboard_url) >= 2, urls
        # data: URLs (the date input's own calendar icon) never touch the network; everything else is the dashboard
        network = [u for u in urls if not u.startswith("data:")]
        outside = [u for u in network if not u.startswith(dashboard_url)]
        assert network and not outside, outside
    finally:
        page.close()


def test_filters_from_the_form_reach_the_page(sample_landed, dashboard_url):
    page = Page(chromium_or_skip())
    try:
        page.open(dashboard_url)
        page.evaluate("document.querySelector('select[name=source]').value = 'api';"
                      "document.querySelector('form').submit()")
        page.wait_for("Page.loadEventFired", timeout=60, after=len(page.events))
        embedded = page.evaluate("JSON.parse(document.getElementById('dashboard-data').textContent)")
        assert embedded["filters"] == {"source": "api"}
        assert embedded["panels"] == approx(expected(sample_landed, dash.Filters(source="api")))
        assert page.evaluate("document.querySelector('select[name=source]').value") == "api"
    finally:
        page.close()
