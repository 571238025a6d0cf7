"""``leadflow train``: fit the LightGBM lead scorer on lead history and save it to the BentoML model store.

Steps:

1. :func:`load_history` reads the history (``pipelines.synthetic.history`` layout: Lead fields, ``sources_count``,
   ``converted``; ``conversion_probability`` when the data is synthetic) from Parquet or BigQuery.
2. :func:`build_matrix` computes the features row by row with ``scoring.features.features_for``: the very
   function the pipeline and the service call, so training and serving cannot disagree.
3. :func:`train` splits by time (the earliest ``1 - valid_fraction`` of the rows by ``first_seen_at`` train,
   the latest validate), fits a binary LightGBM model with early stopping on the validation rows, and
   measures on them: ROC AUC, PR AUC (average precision), log loss, Brier score, a 10-bin calibration table,
   gain importance, and ``ceiling_auc``, the ROC AUC of the true ``conversion_probability`` on the same
   rows when the history has it (the best any model could do).
4. :func:`save` stores the booster as ``lead_scorer`` in the BentoML model store (``scoring.model_store``)
   with the feature version, names, categorical features, metrics and training window as metadata, and
   writes ``metrics.json``, ``roc.png``, ``calibration.png`` and ``feature_importance.png`` to ``out_dir``.

Command line::

    python -m scoring.train (--parquet PATH | --from_bigquery project.dataset.table) [--out out/model]
                            [--rows_limit N] [--num_boost_round 500] [--seed 0] [--bentoml_home DIR]

The number of boosting rounds is chosen on the validation rows (early stopping), so the validation metrics
are very slightly optimistic; the time-ordered split keeps them honest about drift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from scoring import features as F
from scoring import model_store

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": ["binary_logloss", "auc"],  # early stopping watches the first: log loss keeps probabilities calibrated
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "min_data_per_group": 50,
    "max_cat_to_onehot": 8,
    "num_threads": 2,
    "verbose": -1,
}

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _bigquery_frame(table: str, client, rows_limit: int | None) -> pd.DataFrame:
    from schemas.bigquery import client_for

    client = client or client_for(table.split(".")[0])
    sql = f"SELECT * FROM `{table}`"
    if rows_limit:
        sql += f" ORDER BY first_seen_at DESC LIMIT {int(rows_limit)}"
    result = client.query(sql).result()
    try:
        return result.to_dataframe(create_bqstorage_client=False)
    except Exception:  # db-dtypes missing or the result already consumed: rebuild from the rows
        rows = client.query(sql).result()
        return pd.DataFrame([dict(row.items()) for row in rows])


def load_history(
    parquet: str | None = None,
    from_bigquery: str | None = None,
    client=None,
    *,
    rows_limit: int | None = None,
) -> pd.DataFrame:
    """The history from a Parquet file or a BigQuery table (``project.dataset.table``, ``SELECT *``).

    Sorted by ``first_seen_at`` (UTC); ``rows_limit`` keeps the most recent rows.
    """
    if (parquet is None) == (from_bigquery is None):
        raise ValueError("give exactly one of parquet= and from_bigquery=")
    df = pd.read_parquet(parquet) if parquet is not None else _bigquery_frame(from_bigquery, client, rows_limit)
    if "first_seen_at" not in df.columns:
        raise ValueError("the history has no first_seen_at column")
    df["first_seen_at"] = pd.to_datetime(df["first_seen_at"], utc=True)
    df = df.sort_values("first_seen_at", kind="stable").reset_index(drop=True)
    if rows_limit and len(df) > rows_limit:
        df = df.iloc[-rows_limit:].reset_index(drop=True)
    return df


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


def categorical_dtypes() -> dict[str, pd.CategoricalDtype]:
    """Fixed categories per categorical feature (every code, present in the data or not): code == category."""
    levels = F.CATEGORY_LEVELS
    return {name: pd.CategoricalDtype(categories=range(len(levels[name]))) for name in F.CATEGORICAL_FEATURES}


def frame_of(vectors: list[list[float]]) -> pd.DataFrame:
    """Feature vectors (``scoring.features.vector``) as the DataFrame the model takes."""
    X = pd.DataFrame(np.asarray(vectors, dtype=float).reshape(-1, len(F.FEATURE_NAMES)), columns=F.FEATURE_NAMES)
    for name, dtype in categorical_dtypes().items():
        X[name] = X[name].astype(int).astype(dtype)
    return X


def build_matrix(df: pd.DataFrame, progress: Progress | None = None) -> tuple[pd.DataFrame, pd.Series | None]:
    """(X, y): ``scoring.features.features_for`` of every row, in FEATURE_NAMES order with categorical dtypes.

    ``y`` is ``converted`` as int, or None when the frame has no labels.
    """
    progress = progress or _quiet
    records = df.to_dict("records")
    progress(f"computing features for {len(records)} rows (scoring.features.features_for) ...")
    vectors = []
    step = max(1, len(records) // 5)
    for i, record in enumerate(records, 1):
        vectors.append(F.vector(F.features_for(record)))
        if i % step == 0 or i == len(records):
            progress(f"features {i}/{len(records)}")
    X = frame_of(vectors)
    X.index = df.index
    y = df["converted"].astype(int) if "converted" in df.columns else None
    return X, y


# --------------------------------------------------------------------------------------
# Training and metrics
# --------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    booster: Any
    metrics: dict[str, Any]  # valid_auc, valid_pr_auc, valid_log_loss, valid_brier, ceiling_auc, train_auc, ...
    calibration: list[dict[str, float]]  # 10 bins: lo, hi, count, mean_predicted, observed_rate
    importance: dict[str, float]  # gain per feature, descending
    training_window: dict[str, str]  # train_start, train_end, valid_start, valid_end (ISO UTC)
    n_train: int
    n_valid: int
    best_iteration: int
    params: dict[str, Any]
    seconds: dict[str, float]  # features, training
    y_valid: np.ndarray = field(repr=False)
    p_valid: np.ndarray = field(repr=False)
    true_valid: np.ndarray | None = field(default=None, repr=False)

    def metadata(self) -> dict[str, Any]:
        """What ``save`` puts in the BentoML model metadata."""
        m = self.metrics
        return {
            "feature_version": F.FEATURE_VERSION,
            "feature_names": list(F.FEATURE_NAMES),
            "categorical_features": list(F.CATEGORICAL_FEATURES),
            "auc": m["valid_auc"],
            "pr_auc": m["valid_pr_auc"],
            "log_loss": m["valid_log_loss"],
            "brier": m["valid_brier"],
            "ceiling_auc": m.get("ceiling_auc"),
            "training_window": dict(self.training_window),
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "best_iteration": self.best_iteration,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def report(self) -> dict[str, Any]:
        """Everything ``metrics.json`` holds."""
        return {
            **self.metadata(),
            "metrics": self.metrics,
            "calibration": self.calibration,
            "feature_importance_gain": self.importance,
            "params": self.params,
            "seconds": self.seconds,
            "category_levels": {k: list(v) for k, v in F.CATEGORY_LEVELS.items()},
            "defaults": F.DEFAULTS,
        }


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Predicted probability in ``bins`` equal-width bins: mean predicted vs observed rate, count per bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        table.append(
            {
                "lo": round(float(edges[b]), 3),
                "hi": round(float(edges[b + 1]), 3),
                "count": count,
                "mean_predicted": float(p[mask].mean()) if count else None,
                "observed_rate": float(y[mask].mean()) if count else None,
            }
        )
    return table


def _window(times: pd.Series) -> tuple[str, str]:
    return times.min().isoformat(), times.max().isoformat()


def train(
    df: pd.DataFrame,
    *,
    valid_fraction: float = 0.2,
    seed: int = 0,
    num_boost_round: int = 500,
    early_stopping_rounds: int = 30,
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Fit the scorer on the earliest rows by ``first_seen_at`` and measure it on the latest ``valid_fraction``."""
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    progress = progress or _quiet
    if not 0 < valid_fraction < 1:
        raise ValueError("valid_fraction must be between 0 and 1")
    df = df.copy()
    df["first_seen_at"] = pd.to_datetime(df["first_seen_at"], utc=True)
    df = df.sort_values("first_seen_at", kind="stable").reset_index(drop=True)
    n_valid = round(len(df) * valid_fraction)
    n_train = len(df) - n_valid
    if n_train < 50 or n_valid < 20:
        raise ValueError(f"too few rows to train and validate ({len(df)})")

    t0 = time.monotonic()
    X, y = build_matrix(df, progress)
    if y is None:
        raise ValueError("the history has no 'converted' column")
    seconds = {"features": time.monotonic() - t0}

    X_train, y_train, X_valid, y_valid = X.iloc[:n_train], y.iloc[:n_train], X.iloc[n_train:], y.iloc[n_train:]
    if y_train.nunique() < 2 or y_valid.nunique() < 2:
        raise ValueError("both classes must occur in the training and the validation rows")
    full_params = {**DEFAULT_PARAMS, "seed": seed, **(params or {})}
    categorical = list(F.CATEGORICAL_FEATURES)
    d_train = lgb.Dataset(X_train, y_train, categorical_feature=categorical, free_raw_data=False)
    d_valid = lgb.Dataset(X_valid, y_valid, categorical_feature=categorical, reference=d_train)

    t0 = time.monotonic()
    log_every = max(1, num_boost_round // 5)

    def _progress_callback(env) -> None:
        if (env.iteration + 1) % log_every == 0:
            scores = ", ".join(f"{name} {metric} {value:.4f}" for name, metric, value, _ in env.evaluation_result_list)
            progress(f"round {env.iteration + 1}/{num_boost_round}: {scores}")

    booster = lgb.train(
        full_params,
        d_train,
        num_boost_round=num_boost_round,
        valid_sets=[d_valid],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False),
            _progress_callback,
        ],
    )
    seconds["training"] = time.monotonic() - t0
    best = booster.best_iteration or booster.current_iteration()
    progress(f"trained {best} rounds in {seconds['training']:.1f}s")

    p_valid = booster.predict(X_valid, num_iteration=best)
    p_train = booster.predict(X_train, num_iteration=best)
    yv = y_valid.to_numpy()
    metrics: dict[str, Any] = {
        "valid_auc": float(roc_auc_score(yv, p_valid)),
        "valid_pr_auc": float(average_precision_score(yv, p_valid)),
        "valid_log_loss": float(log_loss(yv, p_valid, labels=[0, 1])),
        "valid_brier": float(brier_score_loss(yv, p_valid)),
        "valid_positive_rate": float(yv.mean()),
        "valid_mean_predicted": float(p_valid.mean()),
        "train_auc": float(roc_auc_score(y_train, p_train)),
        "ceiling_auc": None,
    }
    true_valid = None
    if "conversion_probability" in df.columns:
        true_valid = df["conversion_probability"].iloc[n_train:].to_numpy(dtype=float)
        metrics["ceiling_auc"] = float(roc_auc_score(yv, true_valid))
        metrics["ceiling_log_loss"] = float(log_loss(yv, np.clip(true_valid, 1e-9, 1 - 1e-9), labels=[0, 1]))
        metrics["ceiling_brier"] = float(brier_score_loss(yv, true_valid))

    gains = booster.feature_importance(importance_type="gain", iteration=best)
    total = float(gains.sum()) or 1.0
    importance = {
        name: round(float(g) / total, 6)
        for name, g in sorted(zip(booster.feature_name(), gains, strict=True), key=lambda kv: -kv[1])
    }
    times = df["first_seen_at"]
    train_start, train_end = _window(times.iloc[:n_train])
    valid_start, valid_end = _window(times.iloc[n_train:])
    return TrainResult(
        booster=booster,
        metrics=metrics,
        calibration=calibration_table(yv, p_valid),
        importance=importance,
        training_window={
            "train_start": train_start,
            "train_end": train_end,
            "valid_start": valid_start,
            "valid_end": valid_end,
        },
        n_train=n_train,
        n_valid=n_valid,
        best_iteration=int(best),
        params=full_params,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        y_valid=yv,
        p_valid=p_valid,
        true_valid=true_valid,
    )


# --------------------------------------------------------------------------------------
# Saving: model store, metrics.json, plots
# --------------------------------------------------------------------------------------


def write_plots(result: TrainResult, out_dir: str) -> list[str]:
    """roc.png, calibration.png and feature_importance.png in ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    paths = []

    def save(fig, name: str) -> None:
        paths.append(os.path.join(out_dir, name))
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(result.y_valid, result.p_valid)
    ax.plot(fpr, tpr, label=f"model (AUC {result.metrics['valid_auc']:.3f})")
    if result.true_valid is not None:
        fpr, tpr, _ = roc_curve(result.y_valid, result.true_valid)
        ax.plot(fpr, tpr, linestyle="--", label=f"true probability (AUC {result.metrics['ceiling_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, validation rows")
    ax.legend(loc="lower right")
    save(fig, "roc.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    rows = [b for b in result.calibration if b["count"]]
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfect")
    ax.plot(
        [b["mean_predicted"] for b in rows], [b["observed_rate"] for b in rows], marker="o", label="model (10 bins)"
    )
    for b in rows:
        ax.annotate(str(b["count"]), (b["mean_predicted"], b["observed_rate"]), fontsize=7, alpha=0.7)
    ax.set(xlabel="mean predicted probability", ylabel="observed conversion rate", title="Calibration, validation")
    ax.legend(loc="upper left")
    save(fig, "calibration.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(result.importance)[::-1]
    ax.barh(names, [result.importance[n] for n in names])
    ax.set(xlabel="share of total gain", title="Feature importance (gain)")
    save(fig, "feature_importance.png")
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save(result: TrainResult, out_dir: str, *, bentoml_home: str | None = None) -> str:
    """Store the booster as ``lead_scorer`` in the BentoML model store, write metrics.json and plots; return the tag."""
    os.makedirs(out_dir, exist_ok=True)
    metadata = _jsonable(result.metadata())
    custom_objects = {
        "calibration": _jsonable(result.calibration),
        "feature_importance_gain": _jsonable(result.importance),
        "category_levels": {k: list(v) for k, v in F.CATEGORY_LEVELS.items()},
        "defaults": dict(F.DEFAULTS),
    }
    tag = model_store.save_model(
        _best_booster(result),
        metadata,
        custom_objects=custom_objects,
        labels={"feature_version": F.FEATURE_VERSION},
        bentoml_home=bentoml_home,
    )
    report = _jsonable({**result.report(), "model_tag": tag})
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=False)
        f.write("\n")
    write_plots(result, out_dir)
    return tag


def _best_booster(result: TrainResult):
    """The booster cut at its best iteration (what was validated is what gets served)."""
    import lightgbm as lgb

    return lgb.Booster(model_str=result.booster.model_to_string(num_iteration=result.best_iteration))


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def summary(result: TrainResult, tag: str | None = None) -> str:
    m = result.metrics
    w = result.training_window
    ceiling = f"{m['ceiling_auc']:.4f}" if m.get("ceiling_auc") is not None else "n/a (no conversion_probability)"
    lines = [
        f"rows           train {result.n_train}  valid {result.n_valid}  (time-ordered split)",
        f"train window   {w['train_start']} .. {w['train_end']}",
        f"valid window   {w['valid_start']} .. {w['valid_end']}",
        f"rounds         {result.best_iteration} (early stopping)   features {result.seconds['features']:.1f}s"
        f"   training {result.seconds['training']:.1f}s",
        f"valid ROC AUC  {m['valid_auc']:.4f}   ceiling (true probability) {ceiling}   train {m['train_auc']:.4f}",
        f"valid PR AUC   {m['valid_pr_auc']:.4f}   positive rate {m['valid_positive_rate']:.4f}",
        f"valid log loss {m['valid_log_loss']:.4f}   Brier {m['valid_brier']:.4f}",
        "calibration    "
        + "  ".join(
            f"{b['lo']:.1f}-{b['hi']:.1f}: {b['mean_predicted']:.2f}/{b['observed_rate']:.2f} (n={b['count']})"
            for b in result.calibration
            if b["count"]
        ),
        "importance     " + ", ".join(f"{k} {v:.2f}" for k, v in list(result.importance.items())[:6]),
    ]
    if tag:
        lines.append(f"model          {tag}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadflow train", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--parquet", help="history Parquet file (pipelines.synthetic.history layout)")
    source.add_argument("--from_bigquery", metavar="PROJECT.DATASET.TABLE", help="history table in BigQuery")
    parser.add_argument("--out", default="out/model", help="directory for metrics.json and plots")
    parser.add_argument("--rows_limit", type=int, help="use only the most recent N rows")
    parser.add_argument("--valid_fraction", type=float, default=0.2)
    parser.add_argument("--num_boost_round", type=int, default=500)
    parser.add_argument("--early_stopping_rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bentoml_home", help="BentoML home for the model store (default $BENTOML_HOME or ~/bentoml)")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    say(f"loading history from {args.parquet or args.from_bigquery} ...")
    df = load_history(parquet=args.parquet, from_bigquery=args.from_bigquery, rows_limit=args.rows_limit)
    say(f"loaded {len(df)} rows in {time.monotonic() - t0:.1f}s; computing features and training ...")
    result = train(
        df,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        num_boost_round=args.num_boost_round,
        early_stopping_rounds=args.early_stopping_rounds,
        progress=say,
    )
    say("saving model, metrics.json and plots ...")
    tag = save(result, args.out, bentoml_home=args.bentoml_home)
    print(summary(result, tag))
    print(f"wrote          {os.path.join(args.out, 'metrics.json')}, roc.png, calibration.png, feature_importance.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
