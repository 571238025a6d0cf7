"""The notebooks, executed headless with nbclient on this virtualenv's Python, on small data with known answers.

* ``retrain_scorer.ipynb`` on a generated history (Parquet, then the same rows from the BigQuery emulator) with a
  real BentoML store: a weak model is served first, so the notebook must register its better model; run again
  on the same rows from BigQuery it trains the same model, which is not better, so it must not register.
* ``lead_funnel.ipynb`` against the emulator holding the hand-built rows of ``tests/helpers/known_world.py`` (the
  world of ``tests/e2e/test_views.py``); the tables it computes must match the numbers worked out from them.
* Committed notebooks hold no outputs.
"""

from __future__ import annotations

import importlib.util
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pipelines.synthetic import history
from schemas import bigquery as bq
from scoring import model_store
from scoring import train as T
from tests.helpers.bigquery import PROJECT
from tests.helpers.known_world import (
    D2,
    GLOBEX,
    GOOGLE,
    META,
    REALTOR,
    ZILLOW,
    load_known_world,
)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
HISTORY_ROWS = 3000
WINDOW = ("2026-01-11", "2026-04-20")  # of a history over 2026-01-01 .. 2026-04-30


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"leadflow_notebooks_{name}", NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_notebook = load_script("run_notebook")
strip_outputs = load_script("strip_outputs")


def run(name: str, tmp_path: Path, **parameters) -> float:
    t0 = time.monotonic()
    run_notebook.execute(NOTEBOOKS / name, parameters, out=tmp_path / name, timeout=300)
    return time.monotonic() - t0


# --------------------------------------------------------------------------------------
# Committed notebooks
# --------------------------------------------------------------------------------------


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.name for p in paths} >= {"retrain_scorer.ipynb", "lead_funnel.ipynb"}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert strip_outputs.problems(nb) == [], f"{path.name}: run python notebooks/strip_outputs.py"
        assert run_notebook.parameter_names(nb), path.name


def test_strip_outputs_and_parameter_injection(tmp_path):
    nb = nbformat.read(NOTEBOOKS / "lead_funnel.ipynb", as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    code.outputs = [nbformat.v4.new_output("stream", text="+14155550123\n")]
    code.execution_count = 3
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.9"}
    path = tmp_path / "dirty.ipynb"
    nbformat.write(nb, path)
    assert strip_outputs.main(["--check", str(path)]) == 1
    assert strip_outputs.main([str(path)]) == 0
    assert strip_outputs.problems(nbformat.read(path, as_version=4)) == []
    assert strip_outputs.main(["--check", str(path)]) == 0

    run_notebook.inject_parameters(nb, {"START_DATE": "2026-11-21", "TOP_SOURCES": 3})
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert nb.cells[index + 1].source.splitlines()[1:] == ["START_DATE = '2026-11-21'", "TOP_SOURCES = 3"]
    with pytest.raises(run_notebook.NotebookError, match=r"unknown parameter\(s\) \['START'\]"):
        run_notebook.inject_parameters(nb, {"START": "2026-11-21"})


# --------------------------------------------------------------------------------------
# retrain_scorer.ipynb
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("bentoml_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENTOML_HOME", str(home))  # the kernel inherits it: nothing can reach ~/bentoml
    mp.setenv("BENTOML_DO_NOT_TRACK", "true")
    yield str(home)
    mp.undo()


@pytest.mark.slow
@pytest.mark.e2e
def test_retrain_notebook_registers_a_better_model_and_only_then(bigquery_emulator, bentoml_home, tmp_path):
    df = history.generate_history(HISTORY_ROWS, seed=11, start=datetime(2026, 1, 1, tzinfo=UTC), days=120)
    parquet = history.write_parquet(df, str(tmp_path / "history.parquet"))
    start, end = pd.Timestamp(WINDOW[0], tz="UTC"), pd.Timestamp(WINDOW[1], tz="UTC") + pd.Timedelta(days=1)
    in_window = int(((df["first_seen_at"] >= start) & (df["first_seen_at"] < end)).sum())
    assert 0 < in_window < HISTORY_ROWS

    # The model served now: a weak one, fit on the earliest 300 rows with 3 boosting rounds.
    weak = T.train(df.iloc[:300], num_boost_round=3, early_stopping_rounds=3)
    served_tag = T.save(weak, str(tmp_path / "served"), bentoml_home=bentoml_home)

    summary_path = tmp_path / "summary.json"
    common = dict(BENTOML_HOME=bentoml_home, START_DATE=WINDOW[0], END_DATE=WINDOW[1], MIN_ROWS=1000,
                  NUM_BOOST_ROUND=300, SUMMARY_PATH=str(summary_path))
    seconds = run("retrain_scorer.ipynb", tmp_path, DATA_SOURCE="parquet", HISTORY_PARQUET=parquet,
                  OUTPUT_DIR=str(tmp_path / "retrain1"), **common)
    first = json.loads(summary_path.read_text())
    print(f"\n[measure] retrain_scorer.ipynb on {in_window} rows (parquet): {seconds:.1f}s")
    assert first["rows"] == in_window and first["n_train"] + first["n_valid"] == in_window
    assert first["window"]["first_seen_min"] >= "2026-01-11" and first["window"]["first_seen_max"] < "2026-04-21"
    assert 0.68 < first["new"]["auc"] < 0.9, first["new"]
    assert first["served"]["tag"] == served_tag and first["served"]["auc"] < first["new"]["auc"]
    assert first["better"] and first["registered"], first["reason"]
    registered = first["registered_tag"]
    assert registered != served_tag
    assert model_store.model_tag(bentoml_home=bentoml_home) == registered  # lead_scorer:latest is the new model
    _, metadata = model_store.load_model(registered, bentoml_home=bentoml_home)
    assert metadata["auc"] == pytest.approx(first["new"]["auc"]) and metadata["n_valid"] == first["n_valid"]
    assert (tmp_path / "retrain1" / "metrics.json").is_file()
    assert (tmp_path / "retrain1" / "retrain_comparison.png").stat().st_size > 10_000

    # The same rows from BigQuery train the same model again: not better than the one now served.
    table = f"{PROJECT}.nb_{int(time.time() * 1000)}.lead_history"
    history.load_bigquery(df, table, client=bq.client_for(PROJECT, bigquery_emulator))
    seconds = run("retrain_scorer.ipynb", tmp_path, DATA_SOURCE="bigquery", HISTORY_TABLE=table,
                  OUTPUT_DIR=str(tmp_path / "retrain2"), **common)
    second = json.loads(summary_path.read_text())
    print(f"[measure] retrain_scorer.ipynb on {in_window} rows (BigQuery emulator): {seconds:.1f}s")
    assert second["rows"] == in_window and second["served"]["tag"] == registered
    assert second["new"]["auc"] == pytest.approx(first["new"]["auc"])
    assert second["served"]["auc"] == pytest.approx(first["new"]["auc"])  # the served model scored as served
    assert second["better"] is False and second["registered"] is False and second["registered_tag"] is None
    assert second["better"] == (second["new"]["auc"] > second["served"]["auc"])
    assert model_store.model_tag(bentoml_home=bentoml_home) == registered  # nothing new in the store
    assert not (tmp_path / "retrain2" / "metrics.json").exists()


# --------------------------------------------------------------------------------------
# lead_funnel.ipynb
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
def test_lead_funnel_notebook_computes_the_known_numbers(bigquery_emulator, tmp_path):
    dataset, _ = load_known_world(bq.client_for(PROJECT, bigquery_emulator))
    results_path, plots = tmp_path / "funnel.json", tmp_path / "plots"
    seconds = run("lead_funnel.ipynb", tmp_path, PROJECT=PROJECT, DATASET=dataset, START_DATE=D2.isoformat(),
                  END_DATE=D2.isoformat(), EMULATOR_HOST=bigquery_emulator, SAVE_PLOTS_DIR=str(plots),
                  RESULTS_PATH=str(results_path))
    print(f"\n[measure] lead_funnel.ipynb: {seconds:.1f}s")
    got = json.loads(results_path.read_text())
    day = D2.isoformat()
    assert got["window"] == {"start": day, "end": day}

    def row(source, events, new, cross, dup, replay):
        return {"received_date": day, "source_id": source, "events": events, "new_leads": new,
                "cross_source": cross, "duplicates": dup, "replays": replay}

    # Day 2 only: the window drops day 1.
    assert got["leads_per_source_day"] == [
        row(GLOBEX, 1, 1, 0, 0, 0), row(GOOGLE, 2, 1, 0, 0, 1), row(META, 1, 1, 0, 0, 0),
        row(REALTOR, 1, 1, 0, 0, 0), row(ZILLOW, 2, 0, 2, 0, 0)]
    assert got["dead_letter_reasons"] == [
        {"stage": "normalize", "error_type": "missing_contact", "dead_letters": 1, "payload_bytes": 100},
        {"stage": "parse", "error_type": "invalid_json", "dead_letters": 1, "payload_bytes": 7}]
    assert got["score_mix"] == [
        {"primary_source": GLOBEX, "priority_tier": "hot", "leads": 1},
        {"primary_source": GOOGLE, "priority_tier": "cold", "leads": 1},
        {"primary_source": META, "priority_tier": "unscored", "leads": 1},
        {"primary_source": REALTOR, "priority_tier": "warm", "leads": 1}]
    speed = {r["team"]: r for r in got["speed_to_lead"]}
    assert set(speed) == {"east", "west"} and {r["lead_date"] for r in speed.values()} == {day}
    assert (speed["east"]["leads_assigned"], speed["east"]["leads_accepted"]) == (2, 2)
    assert (speed["east"]["p50_to_acceptance_s"], speed["east"]["p90_to_acceptance_s"]) == (150.0, 190.0)
    assert (speed["west"]["leads_assigned"], speed["west"]["p50_to_assignment_s"]) == (1, pytest.approx(15.25))
    # All time: people both sources sent, both directions.
    assert {(r["source_a"], r["source_b"]): r["shared_people"] for r in got["overlap"]} == {
        (GOOGLE, META): 1, (GOOGLE, ZILLOW): 1, (META, GOOGLE): 1, (META, ZILLOW): 3, (ZILLOW, GOOGLE): 1,
        (ZILLOW, META): 3}
    reliability = {r["source_id"]: r for r in got["source_reliability"]}
    assert {s: (r["people"], r["converted"]) for s, r in reliability.items()} == {
        META: (5, 2), ZILLOW: (3, 1), GOOGLE: (2, 2), GLOBEX: (1, 0), REALTOR: (1, 0)}
    assert reliability[META]["conversion_rate"] == pytest.approx(2 / 3)
    assert reliability[REALTOR]["conversion_rate"] is None
    saved = sorted(p.name for p in plots.glob("*.png"))
    assert saved == ["cross_source_overlap.png", "dead_letter_reasons.png", "leads_per_source_and_day.png",
                     "routing_speed.png", "score_mix.png"]
    assert all((plots / name).stat().st_size > 5_000 for name in saved)
