"""The pipeline side of lead scoring: Beam RunInference handlers for the BentoML scorer, and a fallback transform.

* :class:`BentoScorerHandler` calls the scorer service (``scoring/service.py``) over HTTP, batch by batch, under
  Beam's :class:`~apache_beam.ml.inference.base.RemoteModelHandler` retries and client-side throttling.
* :class:`InProcessScorerHandler` loads the same booster from the BentoML model store and scores in the worker.
* :class:`ScoreWithFallback` turns records into ``(record, ScoreResult)``: the model's score when inference works,
  ``fallback(features)`` when it fails after the handler's retries (or the features cannot be computed). No record
  is dropped, and none waits longer than the handler's retries allow.

The response checks (:func:`parse_score_response`, :func:`is_retryable`) and the benchmark helpers
(:func:`measure_scorer`, :func:`measure_in_process`, :func:`latency_summary`) need no Beam pipeline.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RemoteModelHandler,
    RunInference,
)

from scoring.contract import TOKEN_ENV
from scoring.model_store import LATEST

METRICS_NAMESPACE = "leadflow.scoring"
SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"

logger = logging.getLogger(__name__)


class ScoreResult(NamedTuple):
    """A lead's score, where it came from ("model" or "fallback") and the model version (None for fallback)."""

    score: float
    score_source: str
    model_version: str | None


class ScorerError(RuntimeError):
    """Base class for scorer call failures."""


class ScorerUnavailable(ScorerError):
    """5xx, 429 or a transport failure: transient, retried by RemoteModelHandler."""


class ScorerResponseError(ScorerError):
    """A 2xx answer that is not a valid score list (not JSON, wrong length, score outside [0, 1]): retried."""


class ScorerAuthError(ScorerError):
    """401/403: the token is missing or wrong. Retrying cannot help, so it is not retried."""


class ScorerRejectedBatch(ScorerError):
    """Any other 4xx: the scorer refused the features (unknown name, non-numeric value). Not retried."""


def is_retryable(exc: BaseException) -> bool:
    """``retry_filter`` for RemoteModelHandler: everything but auth failures and rejected batches is retried."""
    return not isinstance(exc, ScorerAuthError | ScorerRejectedBatch)


def _error_text(body: bytes | str, limit: int = 500) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text[:limit]
    if isinstance(data, Mapping):
        parts = [str(data.get("error", ""))]
        for item in data.get("detail") or []:
            if isinstance(item, Mapping):
                parts.append(f"{item.get('loc')}: {item.get('msg')}")
        return "; ".join(p for p in parts if p)[:limit]
    return text[:limit]


def raise_for_status(status: int, body: bytes | str = b"") -> None:
    """Map an HTTP status to the scorer errors above (no-op for 2xx)."""
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise ScorerAuthError(
            f"scorer rejected the token (HTTP {status}): set {TOKEN_ENV} (or pass token=) to the scorer's bearer "
            f"token; server said: {_error_text(body)}"
        )
    if status in (408, 429) or status >= 500:
        raise ScorerUnavailable(f"scorer unavailable (HTTP {status}): {_error_text(body)}")
    raise ScorerRejectedBatch(f"scorer rejected the batch (HTTP {status}): {_error_text(body)}")


def parse_score_response(status: int, body: bytes | str, expected_rows: int) -> list[tuple[float, str]]:
    """Check one ``/score`` answer and return ``(score, model_version)`` per row, in request order.

    Raises the matching :class:`ScorerError` for a non-2xx status, and :class:`ScorerResponseError` for anything a
    healthy scorer would not send: non-JSON, not a list, a length other than ``expected_rows``, a row without a
    finite ``score`` in [0, 1] or without a ``model_version`` string.
    """
    raise_for_status(status, body)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ScorerResponseError(f"scorer answered {status} with a body that is not JSON") from exc
    if not isinstance(data, list):
        raise ScorerResponseError(f"scorer answered a JSON {type(data).__name__}, expected a list of scores")
    if len(data) != expected_rows:
        raise ScorerResponseError(f"scorer answered {len(data)} scores for {expected_rows} rows")
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, Mapping):
            raise ScorerResponseError(f"score row {i} is not an object")
        score, version = row.get("score"), row.get("model_version")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise ScorerResponseError(f"score row {i}: score is missing or not a finite number")
        if not 0.0 <= score <= 1.0:
            raise ScorerResponseError(f"score row {i}: score outside [0, 1]")
        if not isinstance(version, str) or not version:
            raise ScorerResponseError(f"score row {i}: model_version is missing")
        out.append((float(score), version))
    return out


def features_payload(features: Mapping[str, Any]) -> dict[str, Any]:
    """A feature dict as JSON the scorer accepts: numbers as floats, booleans as 0/1, NaN/None as null (missing).

    Anything else (strings, lists) is passed through, and the scorer rejects the batch naming the field.
    """
    out: dict[str, Any] = {}
    for name, value in features.items():
        if value is None:
            out[name] = None
        elif isinstance(value, bool):
            out[name] = 1.0 if value else 0.0
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                out[name] = value
                continue
            out[name] = number if math.isfinite(number) else None
    return out


class ScorerClient:
    """The "model" BentoScorerHandler hands to RunInference: an HTTP session bound to one scorer URL."""

    def __init__(self, url: str, token: str | None, timeout_s: float) -> None:
        import requests

        self.base_url = url.rstrip("/")
        self.score_url = self.base_url + "/score"
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def score(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
        """POST the rows to /score and return checked ``(score, model_version)`` pairs; raises ScorerError."""
        import requests

        payload = json.dumps([features_payload(r) for r in rows])
        try:
            resp = self.session.post(self.score_url, data=payload, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise ScorerUnavailable(f"scorer timed out after {self.timeout_s}s: {exc}") from exc
        except requests.RequestException as exc:
            raise ScorerUnavailable(f"cannot reach the scorer at {self.base_url}: {exc}") from exc
        return parse_score_response(resp.status_code, resp.content, len(rows))

    def close(self) -> None:
        self.session.close()


def _batch_kwargs(min_batch_size: int, max_batch_size: int, max_batch_duration_secs: float | None) -> dict[str, Any]:
    if not 1 <= min_batch_size <= max_batch_size:
        raise ValueError(f"need 1 <= min_batch_size ({min_batch_size}) <= max_batch_size ({max_batch_size})")
    kwargs: dict[str, Any] = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
    if max_batch_duration_secs is not None:
        kwargs["max_batch_duration_secs"] = max_batch_duration_secs
    return kwargs


def secret_value(name: str) -> str:
    """The value of a Secret Manager secret version ``projects/P/secrets/S[/versions/V]`` (default latest),
    read on the worker (Dataflow workers have no LEADFLOW_SCORER_TOKEN in their environment)."""
    from google.cloud import secretmanager

    if "/versions/" not in name:
        name = f"{name}/versions/latest"
    client = secretmanager.SecretManagerServiceClient()
    return client.access_secret_version(request={"name": name}).payload.data.decode("utf-8").strip()


class BentoScorerHandler(RemoteModelHandler[Mapping[str, Any], PredictionResult, ScorerClient]):
    """RunInference handler calling the BentoML scorer's ``POST /score`` with batches of feature dicts.

    Each example is a feature dict; each result a ``PredictionResult(example, inference=score, model_id=version)``.
    5xx/429, timeouts, connection errors and malformed answers are retried ``num_retries`` times with Beam's
    exponential backoff (first wait about 5 s); 401/403 (:class:`ScorerAuthError`) and other 4xx
    (:class:`ScorerRejectedBatch`) fail at once. ``token`` None reads ``LEADFLOW_SCORER_TOKEN`` when the worker
    creates its client, so the token is not pickled into the pipeline graph; with neither, ``token_secret`` names
    a Secret Manager secret the worker reads instead (production).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_secret: str | None = None,
        timeout_s: float = 10.0,
        min_batch_size: int = 1,
        max_batch_size: int = 256,
        max_batch_duration_secs: float | None = None,
        num_retries: int = 3,
        throttle_delay_secs: int = 1,
        namespace: str = "leadflow.scorer",
        **throttle_kwargs: Any,
    ) -> None:
        super().__init__(
            namespace=namespace,
            num_retries=num_retries,
            throttle_delay_secs=throttle_delay_secs,
            retry_filter=is_retryable,
            **throttle_kwargs,
        )
        self.url = url
        self._token = token
        self.token_secret = token_secret
        self.timeout_s = timeout_s
        self._namespace = namespace
        self._batching = _batch_kwargs(min_batch_size, max_batch_size, max_batch_duration_secs)

    def create_client(self) -> ScorerClient:
        # No network here: RunInference calls this in DoFn.setup, where a failure would fail the pipeline.
        token = self._token or os.environ.get(TOKEN_ENV) or None
        if token is None and self.token_secret:
            token = secret_value(self.token_secret)
        return ScorerClient(self.url, token, self.timeout_s)

    def request(
        self,
        batch: Sequence[Mapping[str, Any]],
        model: ScorerClient,
        inference_args: dict[str, Any] | None = None,
    ) -> list[PredictionResult]:
        scored = model.score(batch)
        return [PredictionResult(ex, score, version) for ex, (score, version) in zip(batch, scored, strict=True)]

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return self._batching

    def get_metrics_namespace(self) -> str:
        return self._namespace


@dataclass
class LocalScorer:
    """A booster with its feature order, scoring feature dicts the way the service does."""

    booster: Any
    schema: Any  # scoring.service.ModelSchema
    predict_threads: int = 1

    @property
    def model_version(self) -> str:
        return self.schema.model_version

    def score(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        import numpy as np

        from scoring.service import row_problems

        clean = [features_payload(r) for r in rows]
        names = frozenset(self.schema.feature_names)
        for i, row in enumerate(clean):
            problems = row_problems(row, names)
            if problems:
                raise ScorerRejectedBatch(f"row {i}: {'; '.join(problems)}")
        raw = self.booster.predict(self.schema.matrix(clean), num_threads=self.predict_threads)
        return np.clip(raw, 0.0, 1.0).tolist()


def load_local_scorer(
    model_tag: str = LATEST, model_store_dir: str | None = None, predict_threads: int = 1
) -> LocalScorer:
    """Load a booster and its schema from the BentoML model store (the default store, or ``model_store_dir``)."""
    import bentoml
    import bentoml.lightgbm

    from scoring.service import ModelSchema

    if model_store_dir is None:
        bento_model = bentoml.models.get(model_tag)
    else:
        from bentoml._internal.models import ModelStore

        bento_model = ModelStore(model_store_dir).get(model_tag)
    booster = bentoml.lightgbm.load_model(bento_model)
    schema = ModelSchema.from_metadata(str(bento_model.tag), bento_model.info.metadata, booster.feature_name())
    return LocalScorer(booster, schema, predict_threads)


class InProcessScorerHandler(ModelHandler[Mapping[str, Any], PredictionResult, LocalScorer]):
    """RunInference handler scoring in the worker with the booster from the BentoML model store.

    Same output as :class:`BentoScorerHandler`: ``PredictionResult(example, score, model_id=<model tag>)``.
    """

    def __init__(
        self,
        model_tag: str = LATEST,
        *,
        model_store_dir: str | None = None,
        min_batch_size: int = 1,
        max_batch_size: int = 1024,
        max_batch_duration_secs: float | None = None,
        predict_threads: int = 1,
    ) -> None:
        super().__init__()
        self.model_tag = model_tag
        self.model_store_dir = model_store_dir
        self.predict_threads = predict_threads
        self._batching = _batch_kwargs(min_batch_size, max_batch_size, max_batch_duration_secs)

    def load_model(self) -> LocalScorer:
        return load_local_scorer(self.model_tag, self.model_store_dir, self.predict_threads)

    def run_inference(
        self,
        batch: Sequence[Mapping[str, Any]],
        model: LocalScorer,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        scores = model.score(batch)
        return [PredictionResult(ex, s, model.model_version) for ex, s in zip(batch, scores, strict=True)]

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return self._batching

    def get_metrics_namespace(self) -> str:
        return "leadflow.scorer_in_process"


class _ModelScores(beam.DoFn):
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace

    def setup(self) -> None:
        self._by_model = Metrics.counter(self._namespace, "scored_by_model")

    def process(self, keyed: tuple[Any, PredictionResult]):
        record, prediction = keyed
        self._by_model.inc()
        yield record, ScoreResult(float(prediction.inference), SOURCE_MODEL, prediction.model_id)


class _FallbackScores(beam.DoFn):
    """Scores records the model could not: ``fallback(features)``, or ``default_score`` if the fallback raises."""

    def __init__(self, fallback: Callable[[dict], float], default_score: float, namespace: str) -> None:
        self._fallback = fallback
        self._default = default_score
        self._namespace = namespace

    def setup(self) -> None:
        self._by_fallback = Metrics.counter(self._namespace, "scored_by_fallback")
        self._fallback_errors = Metrics.counter(self._namespace, "fallback_errors")

    def score(self, record: Any, features: Mapping[str, Any]):
        self._by_fallback.inc()
        try:
            value = float(self._fallback(dict(features)))
            if not math.isfinite(value):
                raise ValueError("fallback score is not finite")
        except Exception:
            logger.exception("fallback scoring failed; using the default score %s", self._default)
            self._fallback_errors.inc()
            value = self._default
        return record, ScoreResult(min(max(value, 0.0), 1.0), SOURCE_FALLBACK, None)


class _FallbackFailedBatch(_FallbackScores):
    def process(self, failed: tuple[Sequence[tuple[Any, Mapping[str, Any]]], Any]):
        batch, error = failed
        logger.warning("scoring %d records with the fallback: %s", len(batch), error[1] if error else error)
        for record, features in batch:
            yield self.score(record, features)


class _FallbackFeatureFailure(_FallbackScores):
    def setup(self) -> None:
        super().setup()
        self._feature_errors = Metrics.counter(self._namespace, "feature_errors")

    def process(self, failed: tuple[Any, Any]):
        record, _error = failed
        self._feature_errors.inc()
        yield self.score(record, {})


class ScoreWithFallback(beam.PTransform):
    """``records -> (record, ScoreResult)``: model scores through RunInference, the fallback where inference failed.

    ``feature_fn(record)`` gives the feature dict; the record rides along as the key of a KeyedModelHandler. Batches
    that still fail after the handler's retries come out of RunInference's failed-inference output and are scored
    with ``fallback(features)`` (score_source "fallback", model_version None); so are records whose ``feature_fn``
    raises (with ``{}`` as features). A fallback that raises gives ``default_score``. Counters in
    ``namespace``: scored_by_model, scored_by_fallback, feature_errors, fallback_errors.
    """

    def __init__(
        self,
        handler: ModelHandler,
        fallback: Callable[[dict], float],
        feature_fn: Callable[[Any], Mapping[str, Any]],
        *,
        default_score: float = 0.0,
        namespace: str = METRICS_NAMESPACE,
        label: str | None = None,
    ) -> None:
        super().__init__(label)
        self._handler = handler
        self._fallback = fallback
        self._feature_fn = feature_fn
        self._default = default_score
        self._namespace = namespace

    def expand(self, records):
        feature_fn = self._feature_fn
        keyed, bad_features = (
            records
            | "Features" >> beam.Map(lambda record: (record, dict(feature_fn(record)))).with_exception_handling()
        )
        scored, dlq = keyed | "RunInference" >> RunInference(KeyedModelHandler(self._handler)).with_exception_handling()
        by_model = scored | "ModelScores" >> beam.ParDo(_ModelScores(self._namespace))
        by_fallback = dlq.failed_inferences | "FallbackScores" >> beam.ParDo(
            _FallbackFailedBatch(self._fallback, self._default, self._namespace)
        )
        no_features = bad_features | "FeatureFailures" >> beam.ParDo(
            _FallbackFeatureFailure(self._fallback, self._default, self._namespace)
        )
        return (by_model, by_fallback, no_features) | "Merge" >> beam.Flatten()


# --- measurement -----------------------------------------------------------------------------------------------


def latency_summary(latencies_s: Sequence[float], rows: int, elapsed_s: float) -> dict[str, float]:
    """rows/s over ``elapsed_s`` and p50/p99 of per-call latencies, in milliseconds."""
    ordered = sorted(latencies_s)
    if not ordered:
        return {"calls": 0, "rows": 0, "rows_per_s": 0.0, "p50_ms": math.nan, "p99_ms": math.nan}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))] * 1000.0

    return {
        "calls": len(ordered),
        "rows": rows,
        "rows_per_s": rows / elapsed_s if elapsed_s > 0 else math.inf,
        "p50_ms": statistics.median(ordered) * 1000.0,
        "p99_ms": pct(0.99),
    }


def _measure(call: Callable[[Sequence[Mapping[str, Any]]], Any], rows, batch_sizes, min_calls, max_rows, warmup):
    results: dict[int, dict[str, float]] = {}
    rows = list(rows)
    if not rows:
        raise ValueError("measure needs at least one row")
    for size in batch_sizes:
        batches = [[rows[(start + j) % len(rows)] for j in range(size)] for start in range(0, len(rows), size)]
        n_calls = max(min_calls, min(len(batches), max(1, max_rows // size)))
        for i in range(warmup):
            call(batches[i % len(batches)])
        latencies = []
        t0 = time.perf_counter()
        for i in range(n_calls):
            s = time.perf_counter()
            call(batches[i % len(batches)])
            latencies.append(time.perf_counter() - s)
        results[size] = latency_summary(latencies, n_calls * size, time.perf_counter() - t0)
    return results


def measure_scorer(
    url: str,
    rows: Sequence[Mapping[str, Any]],
    batch_sizes: Sequence[int] = (1, 32, 256),
    *,
    token: str | None = None,
    min_calls: int = 20,
    max_rows: int = 4096,
    warmup: int = 2,
    timeout_s: float = 30.0,
) -> dict[int, dict[str, float]]:
    """Sequential ``POST /score`` calls per batch size from one client: ``{size: {calls, rows, rows_per_s, p50_ms,
    p99_ms}}``. Each size makes ``max(min_calls, max_rows // size)`` calls (capped by the rows available, cycling)."""
    client = ScorerClient(url, token, timeout_s)
    try:
        return _measure(client.score, rows, batch_sizes, min_calls, max_rows, warmup)
    finally:
        client.close()


def measure_in_process(
    scorer: LocalScorer,
    rows: Sequence[Mapping[str, Any]],
    batch_sizes: Sequence[int] = (1, 32, 256),
    *,
    min_calls: int = 20,
    max_rows: int = 4096,
    warmup: int = 2,
) -> dict[int, dict[str, float]]:
    """The same measurement as :func:`measure_scorer` with :meth:`LocalScorer.score` (no HTTP)."""
    return _measure(scorer.score, rows, batch_sizes, min_calls, max_rows, warmup)


def format_measurements(http: Mapping[int, Mapping[str, float]], local: Mapping[int, Mapping[str, float]]) -> str:
    """A small table of HTTP vs in-process figures per batch size."""
    head = f"{'batch':>6} {'http rows/s':>12} {'p50 ms':>8} {'p99 ms':>8}"
    lines = [f"{head} | {'local rows/s':>12} {'p50 ms':>8} {'p99 ms':>8}"]
    for size in sorted(set(http) | set(local)):
        h, p = http.get(size, {}), local.get(size, {})
        lines.append(
            f"{size:>6} {h.get('rows_per_s', math.nan):>12.0f} {h.get('p50_ms', math.nan):>8.2f} "
            f"{h.get('p99_ms', math.nan):>8.2f} | {p.get('rows_per_s', math.nan):>12.0f} "
            f"{p.get('p50_ms', math.nan):>8.2f} {p.get('p99_ms', math.nan):>8.2f}"
        )
    return "\n".join(lines)
