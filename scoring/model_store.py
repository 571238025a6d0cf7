"""The lead scorer in the BentoML model store: save a LightGBM booster with its metadata, load it back.

BentoML keeps models under ``$BENTOML_HOME/models`` (default ``~/bentoml``). It reads ``BENTOML_HOME``
lazily, the first time anything asks for the store, and then keeps that store for the life of the process
(``BentoMLContainer.bentoml_home`` and ``model_store`` are memoised singletons); so setting the variable
before the first save or load is enough, and changing it afterwards has no effect. Every function here
takes ``bentoml_home=`` to use another store for that one call (:func:`store_home` overrides the
container's providers and restores them afterwards), which is what tests and ``scoring.train --bentoml_home``
use.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

MODEL_NAME = "lead_scorer"
LATEST = f"{MODEL_NAME}:latest"  # the newest version in the store


@contextlib.contextmanager
def store_home(bentoml_home: str | os.PathLike | None) -> Iterator[str | None]:
    """Within the block, BentoML's model store is ``<bentoml_home>/models`` (no-op when None). Yields the home."""
    if bentoml_home is None:
        yield None
        return
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = os.path.abspath(os.fspath(bentoml_home))
    models = os.path.join(home, "models")
    os.makedirs(models, exist_ok=True)
    with (
        BentoMLContainer.bentoml_home.patch(home),
        BentoMLContainer.model_store_dir.patch(models),
        BentoMLContainer.model_store.patch(ModelStore(models)),
    ):
        yield home


def save_model(
    booster: Any,
    metadata: dict[str, Any],
    *,
    name: str = MODEL_NAME,
    custom_objects: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    bentoml_home: str | os.PathLike | None = None,
) -> str:
    """Save ``booster`` as ``name`` with ``bentoml.lightgbm.save_model``; returns the tag (``name:version``)."""
    import bentoml

    with store_home(bentoml_home):
        model = bentoml.lightgbm.save_model(
            name,
            booster,
            metadata=metadata,
            custom_objects=custom_objects,
            labels=labels,
            signatures={"predict": {"batchable": True, "batch_dim": 0}},
        )
    return str(model.tag)


def load_model(
    tag: str = f"{MODEL_NAME}:latest", *, bentoml_home: str | os.PathLike | None = None
) -> tuple[Any, dict[str, Any]]:
    """(booster, metadata) of a saved model; raises ``bentoml.exceptions.NotFound`` when the tag is unknown."""
    import bentoml

    with store_home(bentoml_home):
        model = bentoml.models.get(tag)
        booster = bentoml.lightgbm.load_model(model)
        return booster, dict(model.info.metadata)


def load_custom_objects(
    tag: str = f"{MODEL_NAME}:latest", *, bentoml_home: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The ``custom_objects`` saved with a model (calibration table, feature spec, ...)."""
    import bentoml

    with store_home(bentoml_home):
        return dict(bentoml.models.get(tag).custom_objects)


def model_tag(tag: str = f"{MODEL_NAME}:latest", *, bentoml_home: str | os.PathLike | None = None) -> str:
    """The concrete tag (``name:version``) that ``tag`` (e.g. ``lead_scorer:latest``) resolves to."""
    import bentoml

    with store_home(bentoml_home):
        return str(bentoml.models.get(tag).tag)
