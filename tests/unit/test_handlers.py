"""Scorer handlers without a BentoML server: response checks, retries against a tiny local HTTP server, the
in-process handler on a temporary model store, and ScoreWithFallback when inference always fails."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RemoteModelHandler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils import retry

from scoring import model_store
from scoring.handlers import (
    BentoScorerHandler,
    InProcessScorerHandler,
    ScorerAuthError,
    ScoreResult,
    ScorerRejectedBatch,
    ScorerResponseError,
    ScorerUnavailable,
    ScoreWithFallback,
    features_payload,
    is_retryable,
    latency_summary,
    load_local_scorer,
    parse_score_response,
)
from tests.helpers.scorer import FEATURES, booster_scores, free_port, make_rows

NAMESPACE = "leadflow.scoring.unit"
V = "lead_scorer:abc"

# The tests that start an HTTP server, train the tiny booster (scorer_store) or run a Beam pipeline are marked slow:
# `make test-fast` keeps the pure checks of parsing, status mapping, payloads and configuration.


def ok_body(scores, version=V):
    return json.dumps([{"score": s, "model_version": version, "feature_version": "t"} for s in scores]).encode()


# --- response parsing ------------------------------------------------------------------------------------------


def test_parse_good_response():
    assert parse_score_response(200, ok_body([0.0, 0.5, 1.0]), 3) == [(0.0, V), (0.5, V), (1.0, V)]
    assert parse_score_response(200, b"[]", 0) == []


@pytest.mark.parametrize(
    ("body", "expected", "match"),
    [
        (b"<html>oops</html>", 1, "not JSON"),
        (b'{"score": 0.5}', 1, "expected a list"),
        (ok_body([0.1, 0.2]), 3, "2 scores for 3 rows"),
        (ok_body([1.5]), 1, r"outside \[0, 1\]"),
        (ok_body([-0.01]), 1, r"outside \[0, 1\]"),
        (b'[{"score": NaN, "model_version": "x"}]', 1, "finite"),
        (b'[{"score": "0.5", "model_version": "x"}]', 1, "finite"),
        (b'[{"score": true, "model_version": "x"}]', 1, "finite"),
        (b'[{"score": 0.5}]', 1, "model_version"),
        (b"[0.5]", 1, "not an object"),
    ],
)
def test_garbage_responses_raise_a_retryable_error(body, expected, match):
    with pytest.raises(ScorerResponseError, match=match) as info:
        parse_score_response(200, body, expected)
    assert is_retryable(info.value)


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (500, ScorerUnavailable, True),
        (503, ScorerUnavailable, True),
        (429, ScorerUnavailable, True),
        (401, ScorerAuthError, False),
        (403, ScorerAuthError, False),
        (400, ScorerRejectedBatch, False),
        (422, ScorerRejectedBatch, False),
    ],
)
def test_status_mapping(status, error, retryable):
    body = json.dumps({"error": "1 validation error", "detail": [{"loc": ["root", 0], "msg": "unknown feature 'x'"}]})
    with pytest.raises(error) as info:
        parse_score_response(status, body.encode(), 1)
    assert is_retryable(info.value) is retryable
    if status == 401:
        assert "scorer rejected the token: set LEADFLOW_SCORER_TOKEN" in str(info.value).replace(" (HTTP 401)", "")
    if status == 400:
        assert "unknown feature 'x'" in str(info.value)
    assert is_retryable(ConnectionError()) and is_retryable(TimeoutError())


def test_features_payload():
    out = features_payload({"a": True, "b": np.float32(2.5), "c": float("nan"), "d": None, "e": 3, "f": "x"})
    assert out == {"a": 1.0, "b": 2.5, "c": None, "d": None, "e": 3.0, "f": "x"}
    json.dumps(out)


def test_row_problems_and_schema():
    from scoring.service import FeatureSchemaError, ModelSchema, row_problems

    names = frozenset(FEATURES)
    assert row_problems({"provider": 1, "has_phone": None}, names) == []
    problems = row_problems({"nope": 1, "provider": "secret", "has_phone": False, "sources_count": math.inf}, names)
    assert problems == [
        "unknown feature 'nope'",
        "feature 'provider': expected a number or null, got string",
        "feature 'has_phone': expected a number or null, got boolean",
        "feature 'sources_count': expected a finite number (use null for missing)",
    ]
    assert "secret" not in " ".join(problems)
    assert row_problems([1, 2], names) == ["expected a JSON object of feature name -> number, got array"]
    assert row_problems({"anything": 1}, None) == []

    schema = ModelSchema.from_metadata(
        V, {"feature_names": ["a", "b"], "feature_version": 3, "feature_defaults": {"b": 0}, "auc": 0.8}, ["x", "y"]
    )
    assert schema.feature_version == "3"
    assert schema.metrics == {"auc": 0.8}
    m = schema.matrix([{"a": 1.0}, {"b": 2.0}, {"a": None}])
    assert np.isnan(m[1, 0]) and np.isnan(m[2, 0])
    assert m[0].tolist() == [1.0, 0.0] and m[1, 1] == 2.0
    assert ModelSchema.from_metadata(V, {}, ["x", "y"]).feature_names == ("x", "y")
    with pytest.raises(FeatureSchemaError, match="booster has 3"):
        ModelSchema.from_metadata(V, {"feature_names": ["a", "b"]}, ["a", "b", "c"])


def test_latency_summary():
    s = latency_summary([0.001] * 99 + [0.1], rows=100, elapsed_s=0.2)
    assert s["calls"] == 100 and s["rows_per_s"] == 500
    assert s["p50_ms"] == pytest.approx(1.0) and s["p99_ms"] == pytest.approx(1.0)
    assert latency_summary([0.001] * 98 + [0.1, 0.1], 100, 1)["p99_ms"] == pytest.approx(100.0)


# --- BentoScorerHandler against a tiny local HTTP server -------------------------------------------------------


class FakeScorer(ThreadingHTTPServer):
    """Answers POST /score according to ``mode``; counts requests and remembers the Authorization headers."""

    def __init__(self):
        self.mode = "ok"
        self.requests = 0
        self.auth: list[str | None] = []
        super().__init__(("127.0.0.1", free_port()), _FakeHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server: FakeScorer = self.server  # type: ignore[assignment]
        server.requests += 1
        server.auth.append(self.headers.get("Authorization"))
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, body = {
            "ok": (200, ok_body([0.5] * len(rows))),
            "500": (500, b'{"error": "boom"}'),
            "401": (401, b'{"error": "invalid bearer token"}'),
            "garbage": (200, b"not json at all"),
            "short": (200, ok_body([0.5] * (len(rows) - 1))),
        }[server.mode]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake_scorer():
    server = FakeScorer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_backoff(monkeypatch):
    """RemoteModelHandler waits ~5 s before a retry; make the waits instant and record them."""
    waits: list[float] = []
    monkeypatch.setattr(retry.Clock, "sleep", lambda self, s: waits.append(s))
    return waits


@pytest.mark.slow
def test_handler_scores_and_sends_the_token(fake_scorer):
    handler = BentoScorerHandler(fake_scorer.url, token="t0k", num_retries=0)
    client = handler.load_model()
    results = handler.run_inference([{"provider": 1.0}, {"has_phone": True}], client)
    assert [(r.inference, r.model_id) for r in results] == [(0.5, V), (0.5, V)]
    assert results[1].example == {"has_phone": True}
    assert fake_scorer.auth == ["Bearer t0k"]


@pytest.mark.slow
def test_handler_token_from_env(fake_scorer, monkeypatch):
    monkeypatch.setenv("LEADFLOW_SCORER_TOKEN", "from-env")
    handler = BentoScorerHandler(fake_scorer.url, num_retries=0)
    handler.run_inference([{}], handler.load_model())
    assert fake_scorer.auth == ["Bearer from-env"]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "error"), [("500", ScorerUnavailable), ("garbage", ScorerResponseError)])
def test_handler_retries_transient_failures(fake_scorer, no_backoff, mode, error):
    fake_scorer.mode = mode
    handler = BentoScorerHandler(fake_scorer.url, num_retries=2, throttle_delay_secs=0)
    with pytest.raises(error):
        handler.run_inference([{"provider": 1.0}], handler.load_model())
    assert fake_scorer.requests == 3
    assert len(no_backoff) == 2


@pytest.mark.slow
def test_handler_does_not_retry_401(fake_scorer, no_backoff):
    fake_scorer.mode = "401"
    handler = BentoScorerHandler(fake_scorer.url, token="wrong", num_retries=3)
    with pytest.raises(ScorerAuthError, match="scorer rejected the token"):
        handler.run_inference([{"provider": 1.0}], handler.load_model())
    assert fake_scorer.requests == 1
    assert no_backoff == []


@pytest.mark.slow
def test_handler_recovers_on_retry(fake_scorer, no_backoff):
    fake_scorer.mode = "short"
    handler = BentoScorerHandler(fake_scorer.url, num_retries=2, throttle_delay_secs=0)
    client = handler.load_model()
    original = client.score

    def flip(rows):
        try:
            return original(rows)
        finally:
            fake_scorer.mode = "ok"

    client.score = flip
    assert [r.inference for r in handler.run_inference([{}, {}], client)] == [0.5, 0.5]
    assert fake_scorer.requests == 2


def test_closed_port_is_unavailable():
    handler = BentoScorerHandler(f"http://127.0.0.1:{free_port()}", num_retries=0, timeout_s=2)
    with pytest.raises(ScorerUnavailable, match="cannot reach the scorer"):
        handler.run_inference([{}], handler.load_model())


def test_batch_sizes_are_configurable():
    handler = BentoScorerHandler("http://x", min_batch_size=4, max_batch_size=64, max_batch_duration_secs=0.5)
    assert handler.batch_elements_kwargs() == {
        "min_batch_size": 4,
        "max_batch_size": 64,
        "max_batch_duration_secs": 0.5,
    }
    with pytest.raises(ValueError, match="min_batch_size"):
        BentoScorerHandler("http://x", min_batch_size=10, max_batch_size=5)


# --- in-process handler and ScoreWithFallback in pipelines -----------------------------------------------------


@pytest.mark.slow
def test_in_process_handler_on_a_tmp_store(scorer_store):
    handler = InProcessScorerHandler(scorer_store.tag, model_store_dir=scorer_store.model_store_dir)
    model = handler.load_model()
    rows = make_rows(50, seed=3)
    results = list(handler.run_inference(rows, model))
    assert {r.model_id for r in results} == {scorer_store.tag}
    np.testing.assert_allclose([r.inference for r in results], booster_scores(scorer_store.booster, rows), rtol=1e-12)
    latest = load_local_scorer(model_store.LATEST, scorer_store.model_store_dir)
    assert latest.model_version == scorer_store.tag
    with pytest.raises(ScorerRejectedBatch, match="unknown feature 'bogus'"):
        handler.run_inference([{"bogus": 1.0}], model)


class AlwaysFailing(RemoteModelHandler):
    def __init__(self):
        super().__init__(namespace="test.failing", num_retries=0, throttle_delay_secs=0)

    def create_client(self):
        return FakeScorer  # any weak-referenceable object; RunInference shares it through apache_beam.utils.shared

    def request(self, batch, model, inference_args=None):
        raise ScorerUnavailable("scorer is down")

    def batch_elements_kwargs(self):
        return {"min_batch_size": 4, "max_batch_size": 4}


def features_of(record):
    if record["id"] == "broken":
        raise KeyError("features")
    return record["features"]


def fallback_score(features):
    if features.get("provider") == 5.0:
        raise ValueError("fallback cannot score provider 5")
    return 0.1 + 0.8 * float(features.get("has_phone") or 0.0)


def run(handler, records):
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    out = (
        pipeline
        | beam.Create(records)
        | ScoreWithFallback(handler, fallback_score, features_of, default_score=0.05, namespace=NAMESPACE)
    )
    collected = out | beam.combiners.ToList()
    _ = collected | beam.Map(_store)
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}  # summed over steps: two steps count scored_by_fallback
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    return _STORE.pop(), counters


_STORE: list = []


def _store(items):
    _STORE.append(items)


def records_for(n, seed=5):
    return [{"id": f"r{i}", "features": row} for i, row in enumerate(make_rows(n, seed=seed))]


@pytest.mark.slow
def test_score_with_fallback_when_inference_always_fails():
    records = [*records_for(21), {"id": "broken"}]
    out, counters = run(AlwaysFailing(), records)
    assert sorted(r["id"] for r, _ in out) == sorted(r["id"] for r in records)
    assert all(isinstance(s, ScoreResult) and s.score_source == "fallback" and s.model_version is None for _, s in out)
    for record, result in out:
        if record["id"] == "broken":
            assert result.score == fallback_score({})
        elif record["features"].get("provider") == 5.0:
            assert result.score == 0.05  # the fallback raised: default_score
        else:
            assert result.score == fallback_score(record["features"])
    raised = sum(1 for r in records if r["id"] != "broken" and r["features"].get("provider") == 5.0)
    assert counters == {
        "scored_by_fallback": len(records),
        "feature_errors": 1,
        **({"fallback_errors": raised} if raised else {}),
    }


@pytest.mark.slow
def test_score_with_fallback_in_process_model(scorer_store):
    records = records_for(30, seed=8)
    handler = InProcessScorerHandler(scorer_store.tag, model_store_dir=scorer_store.model_store_dir, max_batch_size=8)
    out, counters = run(handler, records)
    assert len(out) == 30
    assert {s.score_source for _, s in out} == {"model"}
    assert {s.model_version for _, s in out} == {scorer_store.tag}
    by_id = {r["id"]: s.score for r, s in out}
    expected = booster_scores(scorer_store.booster, [r["features"] for r in records])
    np.testing.assert_allclose([by_id[r["id"]] for r in records], expected, rtol=1e-12)
    assert counters == {"scored_by_model": 30}


@pytest.mark.slow
def test_prediction_result_shape(fake_scorer):
    handler = BentoScorerHandler(fake_scorer.url, num_retries=0)
    (result,) = handler.run_inference([{"provider": 2.0}], handler.load_model())
    assert isinstance(result, PredictionResult)
