"""``bentoml build`` of bentofile.yaml, offline, from a temporary store: the Bento carries the model and the feature
version; a model trained on another feature version is refused before building."""

from __future__ import annotations

import pytest
import yaml

from infra.deploy import scorer_bento
from scoring import model_store
from scoring.features import FEATURE_VERSION
from tests.helpers.scorer import FEATURES, train_booster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _save(home, feature_version: str) -> str:
    return model_store.save_model(train_booster(), {"feature_version": feature_version, "feature_names": FEATURES},
                                  labels={"feature_version": feature_version}, bentoml_home=str(home))


def test_bentoml_build_carries_the_model_and_feature_version(tmp_path):
    model = _save(tmp_path, FEATURE_VERSION)
    assert scorer_bento.check(str(tmp_path)) == model
    tag = scorer_bento.build(str(tmp_path))
    name, version = tag.split(":")
    bento = yaml.safe_load((tmp_path / "bentos" / name / version / "bento.yaml").read_text())
    assert bento["labels"]["feature_version"] == FEATURE_VERSION
    assert [m["tag"] for m in bento["models"]] == [model]
    envs = {e["name"]: e["value"] for e in bento["envs"]}
    assert envs["LEADFLOW_FEATURE_VERSION"] == FEATURE_VERSION
    assert bento["service"] == "scoring.service:LeadScorer"


def test_a_model_of_another_feature_version_is_refused(tmp_path):
    _save(tmp_path, "0-old")
    with pytest.raises(scorer_bento.BentoCheckError, match="trained on feature version '0-old'"):
        scorer_bento.check(str(tmp_path))
