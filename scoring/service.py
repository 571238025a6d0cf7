"""The lead scorer as a BentoML 1.4 service: one LightGBM booster from the model store behind adaptive batching.

Serve it with ``bentoml serve scoring.service:LeadScorer`` (or build the bento described by ``bentofile.yaml``).

Configuration (environment, read when a worker starts):

* ``LEADFLOW_SCORER_MODEL``: the model to serve, default ``lead_scorer:latest``. The service reads everything it
  needs from that model's own metadata: ``feature_names`` (the column order of the booster; the booster's own
  feature names are used when the metadata has none), ``feature_version``, and optionally ``metrics``,
  ``categorical_features`` and ``feature_defaults``. It never imports ``scoring.features``.
* ``LEADFLOW_SCORER_TOKEN``: when set, every call except the health checks (``/livez``, ``/healthz``, ``/readyz``)
  needs ``Authorization: Bearer <token>``; a missing or wrong token gets 401 with a JSON ``error``.
* ``LEADFLOW_SCORER_MAX_BATCH`` (default 1024) and ``LEADFLOW_SCORER_MAX_LATENCY_MS`` (default 1000): the adaptive
  batcher's limits, read at import time.
* ``LEADFLOW_SCORER_PREDICT_THREADS`` (default 1): LightGBM threads per ``predict`` call. One thread keeps the tail
  latency low (OpenMP threads spinning on shared cores add to p99 for small batches; figures: docs/performance.md,
  "Scorer: LightGBM predict threads"); scale with workers.

Endpoints (all POST, JSON):

* ``/score``: body is a JSON array of feature objects ``{"name": number, ...}``; the answer is an array of the same
  length, each ``{"score": float in [0, 1], "model_version": "lead_scorer:<version>", "feature_version": ...}``.
  Requests are merged by BentoML's adaptive batcher into one ``booster.predict`` call. A feature the object does
  not name (or names with ``null``) is *missing*: it takes ``feature_defaults[name]`` from the model metadata when
  present, NaN otherwise, which LightGBM treats as missing (the learnt default direction when the training data
  had missing values for that feature, zero when it had none). An unknown name, a non-numeric value (string,
  boolean, list, object) or a non-finite number makes the whole request 400 with the row index, the field name and
  the problem; values are never echoed back.
* ``/metadata``: ``{"model_version", "feature_version", "feature_names", "categorical_features", "metrics",
  "missing_value"}`` from the model metadata.

Every HTTP response (including errors) also carries the header ``X-Leadflow-Model-Version`` once the model has been
loaded.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import bentoml
import numpy as np
from pydantic import AfterValidator

from scoring.contract import MODEL_ENV, TOKEN_ENV
from scoring.model_store import LATEST

MAX_BATCH_ENV = "LEADFLOW_SCORER_MAX_BATCH"
MAX_LATENCY_ENV = "LEADFLOW_SCORER_MAX_LATENCY_MS"
PREDICT_THREADS_ENV = "LEADFLOW_SCORER_PREDICT_THREADS"
MODEL_VERSION_HEADER = "X-Leadflow-Model-Version"
OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz"})
_MAX_NAME_SHOWN = 64

logger = logging.getLogger(__name__)


class FeatureSchemaError(ValueError):
    """The model's metadata and booster disagree, or the metadata is unusable."""


@dataclass(frozen=True)
class ModelSchema:
    """What the service needs to know about the loaded model, all of it from the model itself."""

    model_version: str
    feature_names: tuple[str, ...]
    feature_version: str | None = None
    categorical_features: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    defaults: tuple[float, ...] = ()

    @classmethod
    def from_metadata(cls, model_version: str, metadata: Mapping[str, Any], booster_feature_names: Sequence[str]):
        """Build the schema from a model's metadata, checked against the booster's own feature list."""
        names = metadata.get("feature_names") or list(booster_feature_names)
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
            raise FeatureSchemaError(f"model {model_version}: metadata feature_names must be a list of names")
        if len(set(names)) != len(names):
            raise FeatureSchemaError(f"model {model_version}: metadata feature_names has duplicates")
        if len(names) != len(booster_feature_names):
            raise FeatureSchemaError(
                f"model {model_version}: metadata names {len(names)} features, the booster has "
                f"{len(booster_feature_names)}"
            )
        raw_defaults = metadata.get("feature_defaults") or {}
        if not isinstance(raw_defaults, Mapping):
            raise FeatureSchemaError(f"model {model_version}: metadata feature_defaults must be a mapping")
        defaults = []
        for name in names:
            value = raw_defaults.get(name)
            defaults.append(math.nan if value is None else float(value))
        version = metadata.get("feature_version")
        metrics = metadata.get("metrics")
        if not isinstance(metrics, Mapping):
            # Training may store metrics as top-level metadata keys; keep the numeric ones.
            skip = {"feature_names", "feature_version", "categorical_features", "feature_defaults"}
            metrics = {
                k: v
                for k, v in metadata.items()
                if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
            }
        return cls(
            model_version=model_version,
            feature_names=tuple(names),
            feature_version=None if version is None else str(version),
            categorical_features=tuple(metadata.get("categorical_features") or ()),
            metrics=dict(metrics),
            defaults=tuple(defaults),
        )

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.feature_names)}

    def describe(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "feature_version": self.feature_version,
            "feature_names": list(self.feature_names),
            "categorical_features": list(self.categorical_features),
            "metrics": _jsonable(self.metrics),
            "missing_value": "feature_defaults from metadata, else NaN (LightGBM missing)",
        }

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows (already validated) as a float64 matrix in ``feature_names`` order; missing names take defaults."""
        index = self.index
        out = np.empty((len(rows), len(self.feature_names)), dtype=np.float64)
        out[:] = np.asarray(self.defaults or [math.nan] * len(self.feature_names), dtype=np.float64)
        for i, row in enumerate(rows):
            for name, value in row.items():
                if value is not None:
                    out[i, index[name]] = value
        return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def _shown(name: Any) -> str:
    text = str(name)
    return repr(text if len(text) <= _MAX_NAME_SHOWN else text[:_MAX_NAME_SHOWN] + "...")


def row_problems(row: Any, feature_names: Sequence[str] | frozenset[str] | None) -> list[str]:
    """Everything wrong with one feature object, naming fields and problems but never values.

    ``feature_names`` None skips the unknown-name check (no model loaded yet). ``null`` means missing and is fine.
    """
    if not isinstance(row, Mapping):
        return [f"expected a JSON object of feature name -> number, got {_type_name(row)}"]
    known = feature_names if isinstance(feature_names, frozenset) or feature_names is None else frozenset(feature_names)
    problems = []
    for name, value in row.items():
        if known is not None and name not in known:
            problems.append(f"unknown feature {_shown(name)}")
            continue
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"feature {_shown(name)}: expected a number or null, got {_type_name(value)}")
        elif not math.isfinite(value):
            problems.append(f"feature {_shown(name)}: expected a finite number (use null for missing)")
    return problems


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


# The feature names of the model this worker serves, set by LeadScorer.__init__. Request validation runs in the
# same worker process, before requests are merged into a batch, so one bad request fails alone.
_ACTIVE: dict[str, Any] = {"schema": None}


def _validate_row(row: dict[str, Any]) -> dict[str, Any]:
    schema: ModelSchema | None = _ACTIVE["schema"]
    problems = row_problems(row, frozenset(schema.feature_names) if schema else None)
    if problems:
        raise ValueError("; ".join(problems))
    return row


FeatureRow = Annotated[dict[str, Any], AfterValidator(_validate_row)]


class BearerTokenMiddleware:
    """ASGI middleware: bearer-token check on every path but the health checks, and the model-version header.

    The token comes from ``LEADFLOW_SCORER_TOKEN`` when the worker builds its app; unset or empty disables the check.
    """

    def __init__(self, app: Any, token_env: str = TOKEN_ENV, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        token = os.environ.get(token_env) or None
        self._token = token.encode() if token else None
        self._open_paths = open_paths
        self._token_env = token_env

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: dict[str, Any]) -> None:
            schema: ModelSchema | None = _ACTIVE["schema"]
            if message["type"] == "http.response.start" and schema is not None:
                headers = list(message.get("headers", []))
                headers.append((MODEL_VERSION_HEADER.lower().encode(), schema.model_version.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if self._token is not None and scope.get("path", "") not in self._open_paths:
            problem = self._check(scope)
            if problem is not None:
                body = json.dumps({"error": problem}).encode()
                await send_with_version(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="leadflow-scorer"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send_with_version)

    def _check(self, scope: dict[str, Any]) -> str | None:
        values = [v for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        if not values:
            return f"missing bearer token: send 'Authorization: Bearer <token>' (the scorer requires {self._token_env})"
        scheme, _, supplied = values[0].partition(b" ")
        if scheme.lower() != b"bearer" or not supplied.strip():
            return "malformed Authorization header: expected 'Bearer <token>'"
        assert self._token is not None
        if not hmac.compare_digest(supplied.strip(), self._token):
            return f"invalid bearer token (it must equal the scorer's {self._token_env})"
        return None


@bentoml.service(name="lead_scorer", traffic={"timeout": 30}, workers=1)
class LeadScorer:
    """Scores lead feature vectors with the LightGBM booster named by ``LEADFLOW_SCORER_MODEL``."""

    def __init__(self) -> None:
        import bentoml.lightgbm

        tag = os.environ.get(MODEL_ENV) or LATEST
        self.bento_model = bentoml.models.get(tag)
        self.booster = bentoml.lightgbm.load_model(self.bento_model)
        self.schema = ModelSchema.from_metadata(
            str(self.bento_model.tag), self.bento_model.info.metadata, self.booster.feature_name()
        )
        self.predict_threads = int(os.environ.get(PREDICT_THREADS_ENV) or 1)
        _ACTIVE["schema"] = self.schema
        logger.info(
            "lead scorer serving %s (feature_version=%s, %d features)",
            self.schema.model_version,
            self.schema.feature_version,
            len(self.schema.feature_names),
        )

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=int(os.environ.get(MAX_BATCH_ENV, "1024")),
        max_latency_ms=int(os.environ.get(MAX_LATENCY_ENV, "1000")),
    )
    def score(self, rows: list[FeatureRow], /) -> list[dict[str, Any]]:
        """Score a JSON array of feature objects; one ``{score, model_version, feature_version}`` per row."""
        if not rows:
            return []
        raw = self.booster.predict(self.schema.matrix(rows), num_threads=self.predict_threads)
        scores = np.clip(raw, 0.0, 1.0)
        version, feature_version = self.schema.model_version, self.schema.feature_version
        return [
            {"score": float(s), "model_version": version, "feature_version": feature_version} for s in scores.tolist()
        ]

    @bentoml.api
    def metadata(self) -> dict[str, Any]:
        """The served model: tag, feature version and names, categorical features, metrics."""
        return self.schema.describe()


LeadScorer.add_asgi_middleware(BearerTokenMiddleware)
