"""End to end against a real ``bentoml serve scoring.service:LeadScorer``: scores, validation, auth, and the pipeline
side (ScoreWithFallback over BentoScorerHandler) with the server up, killed mid-run, and back.

The server runs with LEADFLOW_SCORER_TOKEN set, so every API call here sends the token unless it tests its absence.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
import numpy as np
import pytest
import requests
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from scoring.handlers import (
    BentoScorerHandler,
    ScorerAuthError,
    ScorerClient,
    ScoreWithFallback,
    format_measurements,
    load_local_scorer,
    measure_in_process,
    measure_scorer,
)
from tests.helpers.scorer import FEATURE_VERSION, FEATURES, TOKEN, booster_scores, make_rows

pytestmark = pytest.mark.e2e

NAMESPACE = "leadflow.scoring.e2e"


def post(server, path: str, body, headers: dict | None = None) -> requests.Response:
    hdrs = {"Content-Type": "application/json", **(server.headers if headers is None else headers)}
    return requests.post(server.url + path, data=json.dumps(body), headers=hdrs, timeout=30)


@pytest.mark.parametrize("n", [1, 32, 256])
def test_scores_match_the_booster(scorer_server, scorer_store, n):
    rows = make_rows(n, seed=n)
    resp = post(scorer_server, "/score", rows)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body) == n
    assert {r["model_version"] for r in body} == {scorer_store.tag}
    assert {r["feature_version"] for r in body} == {FEATURE_VERSION}
    assert resp.headers["X-Leadflow-Model-Version"] == scorer_store.tag
    np.testing.assert_allclose([r["score"] for r in body], booster_scores(scorer_store.booster, rows), rtol=1e-12)


def test_concurrent_requests_are_batched_and_split_back(scorer_server, scorer_store):
    requests_rows = [make_rows(k + 1, seed=100 + k) for k in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda rows: post(scorer_server, "/score", rows), requests_rows))
    for rows, resp in zip(requests_rows, answers, strict=True):
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(
            [r["score"] for r in resp.json()], booster_scores(scorer_store.booster, rows), rtol=1e-12
        )


def test_empty_and_all_missing_rows(scorer_server, scorer_store):
    assert post(scorer_server, "/score", []).json() == []
    resp = post(scorer_server, "/score", [{}, {"provider": None}])
    assert resp.status_code == 200, resp.text
    expected = booster_scores(scorer_store.booster, [{}, {}])
    np.testing.assert_allclose([r["score"] for r in resp.json()], expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"provider": 1.0, "lead_age_days": 3}, ["unknown feature", "lead_age_days"]),
        ({"message_length": "secret-value-123"}, ["message_length", "expected a number", "string"]),
        ({"has_phone": True}, ["has_phone", "boolean"]),
        ({"sources_count": [1, 2]}, ["sources_count", "array"]),
    ],
)
def test_bad_features_are_a_400_naming_the_field(scorer_server, row, words):
    resp = post(scorer_server, "/score", [make_rows(1)[0], row])
    assert resp.status_code == 400, resp.text
    text = resp.text
    for word in words:
        assert word in text
    assert "secret-value-123" not in text  # values are never echoed
    assert '["root",1]' in text.replace(" ", "") or "'root', 1" in text  # the row index


def test_not_a_list_is_a_400(scorer_server):
    resp = post(scorer_server, "/score", {"rows": []})
    assert resp.status_code == 400


def test_auth(scorer_server, scorer_store):
    rows = make_rows(2)
    no_token = post(scorer_server, "/score", rows, headers={})
    assert no_token.status_code == 401
    assert "missing bearer token" in no_token.json()["error"]
    wrong = post(scorer_server, "/score", rows, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert "invalid bearer token" in wrong.json()["error"]
    assert TOKEN not in wrong.text
    basic = post(scorer_server, "/score", rows, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert post(scorer_server, "/metadata", {}, headers={}).status_code == 401
    assert post(scorer_server, "/score", rows).status_code == 200
    for path in ("/livez", "/readyz", "/healthz"):
        assert requests.get(scorer_server.url + path, timeout=5).status_code == 200, path
    with pytest.raises(ScorerAuthError, match="set LEADFLOW_SCORER_TOKEN"):
        ScorerClient(scorer_server.url, "wrong", 5).score(rows)


def test_metadata(scorer_server, scorer_store):
    resp = post(scorer_server, "/metadata", {})
    assert resp.status_code == 200, resp.text
    meta = resp.json()
    assert meta["model_version"] == scorer_store.tag
    assert meta["feature_version"] == FEATURE_VERSION
    assert meta["feature_names"] == FEATURES


def test_http_vs_in_process_latency(scorer_server, scorer_store, capsys):
    rows = make_rows(512, seed=7)
    http = measure_scorer(scorer_server.url, rows, (1, 32, 256), token=TOKEN, min_calls=20, max_rows=2048)
    local = measure_in_process(
        load_local_scorer(scorer_store.tag, scorer_store.model_store_dir), rows, (1, 32, 256), max_rows=2048
    )
    with capsys.disabled():
        print("\nlead scorer: HTTP (bentoml serve, one sequential client) vs in-process booster")
        print(format_measurements(http, local))
    for size in (1, 32, 256):
        assert http[size]["calls"] >= 20
        assert http[size]["rows_per_s"] > 0
        assert local[size]["rows_per_s"] > 0


# --- pipeline side ---------------------------------------------------------------------------------------------

_RECORDS = 40
_KILL_AFTER = 20
_HOOKS: dict[str, object] = {}


def lead_features(record: dict) -> dict:
    """feature_fn for the pipeline tests: the record carries its features; may trigger the kill hook."""
    hook = _HOOKS.get("on_features")
    if hook is not None:
        hook()
    return record["features"]


def simple_fallback(features: dict) -> float:
    return 0.25 + 0.5 * float(features.get("has_phone") or 0.0)


def run_scoring(handler) -> tuple[list, dict]:
    rows = make_rows(_RECORDS, seed=11)
    records = [{"lead_id": f"lead-{i:03d}", "features": row} for i, row in enumerate(rows)]
    out: list = []
    _HOOKS["sink"] = out.append
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    _ = (
        pipeline
        | beam.Create(records)
        | ScoreWithFallback(handler, simple_fallback, lead_features, namespace=NAMESPACE)
        | beam.Map(_collect)
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}  # summed over steps: two steps count scored_by_fallback
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    _HOOKS.pop("sink", None)
    return out, counters


def _collect(element):
    _HOOKS["sink"](element)


def _handler(server, **kwargs):
    defaults = {"token": TOKEN, "min_batch_size": 8, "max_batch_size": 8, "num_retries": 0, "throttle_delay_secs": 0}
    return BentoScorerHandler(server.url, **{**defaults, **kwargs})


def test_pipeline_scores_every_record_with_the_model(scorer_server, scorer_store):
    out, counters = run_scoring(_handler(scorer_server))
    assert len(out) == _RECORDS
    assert {r["lead_id"] for r, _ in out} == {f"lead-{i:03d}" for i in range(_RECORDS)}
    assert {s.score_source for _, s in out} == {"model"}
    assert {s.model_version for _, s in out} == {scorer_store.tag}
    by_id = {r["lead_id"]: (r, s) for r, s in out}
    recs = [by_id[f"lead-{i:03d}"] for i in range(_RECORDS)]
    np.testing.assert_allclose(
        [s.score for _, s in recs], booster_scores(scorer_store.booster, [r["features"] for r, _ in recs]), rtol=1e-12
    )
    assert counters.get("scored_by_model") == _RECORDS
    assert counters.get("scored_by_fallback", 0) == 0


def test_pipeline_falls_back_when_the_server_dies_and_recovers(scorer_server, scorer_store):
    seen = {"n": 0}

    def kill_mid_run():
        seen["n"] += 1
        if seen["n"] == _KILL_AFTER:
            scorer_server.kill()

    _HOOKS["on_features"] = kill_mid_run
    try:
        t0 = time.monotonic()
        out, counters = run_scoring(_handler(scorer_server))
        down_s = time.monotonic() - t0
    finally:
        _HOOKS.pop("on_features", None)
    assert seen["n"] == _RECORDS
    assert len(out) == _RECORDS, "a record was dropped"
    assert {r["lead_id"] for r, _ in out} == {f"lead-{i:03d}" for i in range(_RECORDS)}
    sources = [s.score_source for _, s in out]
    assert sources.count("model") >= 8, "batches sent before the kill are scored by the model"
    assert sources.count("fallback") >= _RECORDS - _KILL_AFTER
    for record, result in out:
        if result.score_source == "fallback":
            assert result.model_version is None
            assert result.score == simple_fallback(record["features"])
        else:
            assert result.model_version == scorer_store.tag
    assert counters["scored_by_model"] == sources.count("model")
    assert counters["scored_by_fallback"] == sources.count("fallback")
    assert down_s < 30

    scorer_server.start()  # the server comes back on the same port: a second run is scored by the model again
    out, counters = run_scoring(_handler(scorer_server))
    assert len(out) == _RECORDS
    assert {s.score_source for _, s in out} == {"model"}
    assert counters.get("scored_by_model") == _RECORDS
