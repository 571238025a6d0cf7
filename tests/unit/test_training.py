"""pipelines.synthetic.history + scoring.train + scoring.model_store: generate, train from Parquet, save, load back."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.synthetic import history
from scoring import features as F
from scoring import model_store, train

# The tests that train a model are marked slow; generating, writing and loading history is quick.
ROWS = 4000
ROUNDS = 150


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory, request):
    # BentoML reads BENTOML_HOME lazily; point it at a tmp dir too, so nothing can reach ~/bentoml.
    home = tmp_path_factory.mktemp("bentoml_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENTOML_HOME", str(home))
    request.addfinalizer(mp.undo)
    return str(home)


@pytest.fixture(scope="module")
def parquet_path(tmp_path_factory):
    df = history.generate_history(ROWS, seed=5)
    return history.write_parquet(df, str(tmp_path_factory.mktemp("history") / "history.parquet"))


@pytest.fixture(scope="module")
def trained(parquet_path, bentoml_home, tmp_path_factory):
    df = train.load_history(parquet=parquet_path)
    result = train.train(df, num_boost_round=ROUNDS, early_stopping_rounds=20, seed=0)
    out_dir = str(tmp_path_factory.mktemp("model"))
    tag = train.save(result, out_dir, bentoml_home=bentoml_home)
    return df, result, out_dir, tag


def test_history_shape_and_truth():
    df = history.generate_history(1500, seed=3)
    again = history.generate_history(1500, seed=3)
    pd.testing.assert_frame_equal(df, again)
    for column in (
        "lead_id",
        "primary_provider",
        "first_seen_at",
        "phone_e164",
        "email",
        "country",
        "postal_code",
        "message",
        "is_test",
        "sources_count",
        "conversion_probability",
        "converted",
    ):
        assert column in df.columns
    assert df["first_seen_at"].is_monotonic_increasing and str(df["first_seen_at"].dt.tz) == "UTC"
    assert set(df["primary_provider"]) == set(history.PROVIDER_WEIGHTS)
    assert df["phone_e164"].notna().any() and df["phone_e164"].isna().any()
    assert df["email"].isna().any() and df["email"].str.endswith(history.DISPOSABLE_DOMAINS, na=False).any()
    assert (df["phone_e164"].notna() | df["email"].notna()).all()
    assert set(df["sources_count"]) == {1, 2, 3, 4} and df["is_test"].any()
    assert df["conversion_probability"].between(0, 1).all() and set(df["converted"]) == {0, 1}
    assert 0.15 < df["converted"].mean() < 0.35
    assert 0.72 < roc_auc_score(df["converted"], df["conversion_probability"]) < 0.88


def test_load_history_from_parquet(parquet_path):
    df = train.load_history(parquet=parquet_path)
    assert len(df) == ROWS and df["first_seen_at"].is_monotonic_increasing
    assert str(df["first_seen_at"].dt.tz) == "UTC"
    limited = train.load_history(parquet=parquet_path, rows_limit=100)
    assert len(limited) == 100 and limited["first_seen_at"].min() >= df["first_seen_at"].iloc[-100]
    with pytest.raises(ValueError):
        train.load_history()
    with pytest.raises(ValueError):
        train.load_history(parquet=parquet_path, from_bigquery="p.d.t")


@pytest.mark.slow
def test_model_learns_the_truth(trained):
    _, result, _, _ = trained
    m = result.metrics
    assert m["valid_auc"] > 0.6
    assert m["ceiling_auc"] - m["valid_auc"] < 0.1
    assert 0 < m["valid_brier"] < 0.25 and 0 < m["valid_log_loss"] < 0.69 and 0 < m["valid_pr_auc"] < 1
    assert 1 <= result.best_iteration <= ROUNDS
    assert len(result.calibration) == 10 and sum(b["count"] for b in result.calibration) == result.n_valid
    assert set(result.importance) == set(F.FEATURE_NAMES)
    top = list(result.importance)[:5]
    assert "provider" in top and "intent_words" in top  # two of the strongest true effects


@pytest.mark.slow
def test_split_is_time_ordered(trained):
    df, result, _, _ = trained
    w = result.training_window
    assert result.n_train + result.n_valid == len(df) and result.n_valid == round(len(df) * 0.2)
    assert w["train_start"] <= w["train_end"] <= w["valid_start"] <= w["valid_end"]
    assert w["train_start"] == df["first_seen_at"].min().isoformat()
    assert w["valid_end"] == df["first_seen_at"].max().isoformat()
    # The validation rows are the latest ones whatever order the frame comes in.
    shuffled = train.train(df.sample(frac=1, random_state=1), num_boost_round=5, early_stopping_rounds=5)
    assert shuffled.training_window == w
    assert np.array_equal(shuffled.y_valid, df["converted"].to_numpy()[-result.n_valid :])


@pytest.mark.slow
def test_metrics_json_and_plots(trained):
    _, result, out_dir, tag = trained
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["model_tag"] == tag
    assert report["feature_names"] == list(F.FEATURE_NAMES) and report["feature_version"] == F.FEATURE_VERSION
    assert report["metrics"]["valid_auc"] == pytest.approx(result.metrics["valid_auc"])
    assert report["metrics"]["ceiling_auc"] == pytest.approx(result.metrics["ceiling_auc"])
    assert len(report["calibration"]) == 10 and report["training_window"] == result.training_window
    for name in ("roc.png", "calibration.png", "feature_importance.png"):
        with open(os.path.join(out_dir, name), "rb") as f:
            data = f.read()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name


@pytest.mark.slow
def test_model_store_round_trip(trained, bentoml_home):
    _, result, _, tag = trained
    assert tag.startswith("lead_scorer:")
    assert os.path.isdir(os.path.join(bentoml_home, "models", "lead_scorer"))
    booster, metadata = model_store.load_model(model_store.LATEST, bentoml_home=bentoml_home)
    assert model_store.model_tag(bentoml_home=bentoml_home) == tag
    assert metadata["feature_version"] == F.FEATURE_VERSION
    assert metadata["feature_names"] == list(F.FEATURE_NAMES)
    assert metadata["categorical_features"] == list(F.CATEGORICAL_FEATURES)
    for key in ("auc", "pr_auc", "log_loss", "brier"):
        assert isinstance(metadata[key], float)
    assert metadata["auc"] == pytest.approx(result.metrics["valid_auc"])
    assert metadata["training_window"] == result.training_window
    objects = model_store.load_custom_objects(tag, bentoml_home=bentoml_home)
    assert objects["defaults"] == F.DEFAULTS and len(objects["calibration"]) == 10

    # Identical predictions: the trainer's booster on the validation frame, the loaded one on the frame,
    # and the loaded one on plain feature vectors (what the service and the pipeline handlers send).
    valid = history.generate_history(300, seed=99)
    X, _ = train.build_matrix(valid)
    expected = result.booster.predict(X, num_iteration=result.best_iteration)
    assert np.array_equal(booster.predict(X), expected)
    vectors = np.array([F.vector(F.features_for(row)) for row in valid.to_dict("records")])
    assert np.allclose(booster.predict(vectors), expected, rtol=0, atol=1e-12)
    assert np.allclose(booster.predict(train.frame_of(vectors.tolist())), expected, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_cli_trains_from_parquet(parquet_path, bentoml_home, tmp_path, capsys):
    out = tmp_path / "cli"
    code = train.main(
        [
            "--parquet",
            parquet_path,
            "--out",
            str(out),
            "--bentoml_home",
            bentoml_home,
            "--num_boost_round",
            "30",
            "--rows_limit",
            "3000",
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "valid ROC AUC" in printed.out and "ceiling" in printed.out and "lead_scorer:" in printed.out
    assert "features 3000/3000" in printed.err
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_train"] + report["n_valid"] == 3000


class _FakeBigQuery:
    """Just enough of google.cloud.bigquery.Client for load_bigquery / load_history."""

    def __init__(self):
        from google.api_core.exceptions import NotFound

        self.not_found = NotFound
        self.datasets, self.tables, self.rows = set(), {}, []

    def get_dataset(self, ref):
        if ref not in self.datasets:
            raise self.not_found(ref)

    def create_dataset(self, dataset):
        self.datasets.add(f"{dataset.project}.{dataset.dataset_id}")

    def get_table(self, ref):
        if ref not in self.tables:
            raise self.not_found(ref)
        return self.tables[ref]

    def create_table(self, table):
        self.tables[f"{table.project}.{table.dataset_id}.{table.table_id}"] = table

    def insert_rows_json(self, table, rows, row_ids=None):
        assert table in self.tables and len(row_ids) == len(rows)
        json.dumps(rows)  # every value must be JSON
        self.rows.extend(rows)
        return []

    def query(self, sql):
        assert sql.startswith("SELECT * FROM `p.d.history`")
        rows = self.rows

        class _Job:
            def result(self):
                class _Result(list):
                    def to_dataframe(self, **_):
                        raise ImportError("db-dtypes is not installed")

                return _Result(type("Row", (), {"items": lambda self, r=r: r.items()})() for r in rows)

        return _Job()


def test_bigquery_load_and_read_back():
    df = history.generate_history(300, seed=4)
    client = _FakeBigQuery()
    assert history.load_bigquery(df, "p.d.history", client=client, batch_rows=128) == 300
    assert "p.d" in client.datasets and "p.d.history" in client.tables
    assert [f.name for f in client.tables["p.d.history"].schema][-2:] == ["conversion_probability", "converted"]
    back = train.load_history(from_bigquery="p.d.history", client=client)
    assert len(back) == 300 and back["first_seen_at"].is_monotonic_increasing
    X_back, y_back = train.build_matrix(back)
    X, y = train.build_matrix(df)
    pd.testing.assert_frame_equal(X_back.reset_index(drop=True), X.reset_index(drop=True))
    assert y_back.tolist() == y.tolist()
