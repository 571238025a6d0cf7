"""The lead pipeline with scoring: a LightGBM model trained by scoring.train on generated history,
scored in-process and through a real `bentoml serve`; the scorer down, or refusing the token, gives
fallback scores and loses no lead."""


from __future__ import annotations

import numpy as np
import pytest

from pipelines import lead_pipeline
from pipelines.ops.summary import read_table
from pipelines.synthetic import history
from pipelines.synthetic.samples import sample_path
from schemas.records import Lead
from scoring import model_store, train
from scoring.features import features_for, priority_tier, vector
from tests.helpers.scorer import ScorerServer, point_bentoml_at

pytestmark = pytest.mark.e2e
TOKEN = "pipeline-test-token"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("bentoml_home")
    point_bentoml_at(home)
    result = train.train(history.generate_history(3000, seed=4), num_boost_round=80)
    tag = train.save(result, tmp_path_factory.mktemp("model"), bentoml_home=str(home))
    booster, _ = model_store.load_model(tag, bentoml_home=str(home))
    return home, str(tag), booster


def run(tmp_path, *args):
    out = tmp_path / "out"
    lead_pipeline.run([f"--input_file={sample_path()}", f"--output_dir={out}", *args])
    return list(read_table(str(out), "leads")), list(read_table(str(out), "lead_events"))


def lead_of(row) -> Lead:
    from datetime import datetime

    fields = {k: v for k, v in row.items() if k in Lead.__dataclass_fields__}
    for k in ("first_seen_at", "processed_at"):
        fields[k] = datetime.fromisoformat(fields[k].replace("Z", "+00:00"))
    return Lead(**fields)


def expected_scores(booster, rows) -> np.ndarray:
    return booster.predict(np.array([vector(features_for(lead_of(r))) for r in rows], dtype=float))


def test_inprocess_scores_match_the_trained_model(trained, tmp_path):
    home, tag, booster = trained
    leads, events = run(tmp_path, "--scorer=inprocess", f"--scorer_model={tag}",
                        f"--scorer_model_store={home / 'models'}")
    assert len(leads) == 222 and len(events) == 323  # scoring changes no count
    assert {r["score_source"] for r in leads} == {"model"}
    assert {r["model_version"] for r in leads} == {tag}
    np.testing.assert_allclose([r["score"] for r in leads], expected_scores(booster, leads), rtol=1e-9)
    assert all(r["priority_tier"] == priority_tier(r["score"]) for r in leads)
    assert len({r["priority_tier"] for r in leads}) >= 2


def test_bentoml_scorer_then_down_then_wrong_token(trained, tmp_path, monkeypatch, caplog):
    home, tag, booster = trained
    monkeypatch.setenv("LEADFLOW_SCORER_TOKEN", TOKEN)
    server = ScorerServer(home, token=TOKEN).start()
    try:
        leads, _ = run(tmp_path / "up", "--scorer=bentoml", f"--scorer_url={server.url}", "--scorer_retries=1")
        assert len(leads) == 222
        assert {r["score_source"] for r in leads} == {"model"} and {r["model_version"] for r in leads} == {tag}
        np.testing.assert_allclose([r["score"] for r in leads], expected_scores(booster, leads), rtol=1e-6)

        monkeypatch.setenv("LEADFLOW_SCORER_TOKEN", "wrong")
        with caplog.at_level("WARNING"):
            refused, _ = run(tmp_path / "token", "--scorer=bentoml", f"--scorer_url={server.url}")
        assert len(refused) == 222 and {r["score_source"] for r in refused} == {"fallback"}
        assert "rejected the token" in caplog.text
    finally:
        server.close()
    monkeypatch.setenv("LEADFLOW_SCORER_TOKEN", TOKEN)
    down, events = run(tmp_path / "down", "--scorer=bentoml", f"--scorer_url={server.url}", "--scorer_retries=0")
    assert len(down) == 222 and len(events) == 323  # the scorer down loses nothing
    assert {r["score_source"] for r in down} == {"fallback"} and {r["model_version"] for r in down} == {None}
    assert all(0.0 <= r["score"] <= 1.0 and r["priority_tier"] for r in down)
