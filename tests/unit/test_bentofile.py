"""bentofile.yaml carries the feature version the code computes and the package versions the lock pins."""

from __future__ import annotations

import re
from pathlib import Path

from infra.deploy import scorer_bento
from scoring import model_store
from scoring.contract import MODEL_ENV
from scoring.features import FEATURE_VERSION

REPO = Path(__file__).resolve().parents[2]


def test_bentofile_feature_version_is_the_codes():
    assert scorer_bento.problems(scorer_bento.load_bentofile(), None, FEATURE_VERSION) == []


def test_bentofile_pins_the_locked_versions():
    lock = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)$", (REPO / "requirements.lock").read_text(), re.M))
    packages = scorer_bento.load_bentofile()["python"]["packages"]
    for requirement in packages:
        name, _, version = requirement.partition("==")
        assert version, f"bentofile.yaml: pin {name} (to {lock.get(name)}, the version requirements.lock holds)"
        assert lock.get(name.lower()) == version, f"bentofile.yaml pins {requirement}; the lock has {lock.get(name)}"


def test_bentofile_carries_the_model():
    bentofile = scorer_bento.load_bentofile()
    assert bentofile["models"] == [model_store.LATEST]
    envs = {e["name"]: e["value"] for e in bentofile["envs"]}
    assert envs[MODEL_ENV] == model_store.LATEST
    assert bentofile["python"]["lock_packages"] is False  # no resolver run against PyPI at build time


def test_problems_name_every_disagreement():
    bentofile = {"labels": {"feature_version": "1"}, "envs": [{"name": "LEADFLOW_FEATURE_VERSION", "value": "2"}]}
    found = scorer_bento.problems(bentofile, {"feature_version": "0"}, "1")
    assert len(found) == 2
    assert "LEADFLOW_FEATURE_VERSION" in found[0] and "trained on feature version '0'" in found[1]
