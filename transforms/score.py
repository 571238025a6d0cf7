"""Score stage: each new lead gets a conversion score, where it came from, the model version and a tier.

``--scorer`` picks the model: ``bentoml`` (the BentoML service over HTTP, in batches, with retries
and throttling: RunInference with ``scoring.handlers.BentoScorerHandler``), ``inprocess`` (the
LightGBM booster from the BentoML model store, in the worker), or ``none`` (leads are written
unscored). When the model cannot answer after retries, the rule-based ``fallback_score`` is used
and marked ``score_source="fallback"``: a lead is never dropped or held indefinitely. Features
come from ``scoring.features.features_for``, the same function training uses.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import apache_beam as beam

from schemas.records import Lead
from scoring import model_store
from scoring.features import fallback_score, features_for, priority_tier

SCORERS = ("none", "inprocess", "bentoml")


def with_score(lead: Lead, result, hot: float, warm: float) -> Lead:
    """The lead with its ScoreResult and priority tier filled in."""
    return dataclasses.replace(
        lead, score=float(result.score), score_source=result.score_source, model_version=result.model_version,
        priority_tier=priority_tier(result.score, hot=hot, warm=warm),
    )


def make_handler(scorer: str, *, url: str | None, model_tag: str, model_store: str | None, retries: int = 3,
                 token_secret: str | None = None):
    from scoring.handlers import BentoScorerHandler, InProcessScorerHandler

    if scorer == "bentoml":
        if not url:
            raise ValueError("--scorer=bentoml needs --scorer_url (or LEADFLOW_SCORER_URL)")
        # the token: LEADFLOW_SCORER_TOKEN on the worker, else the Secret Manager secret (Dataflow)
        return BentoScorerHandler(url, num_retries=retries, token_secret=token_secret)
    if scorer == "inprocess":
        return InProcessScorerHandler(model_tag, model_store_dir=model_store)
    raise ValueError(f"unknown scorer {scorer!r}; choose one of {SCORERS}")


@dataclass(frozen=True)
class ScoringConfig:
    """Which scorer, where it is (``url``: the BentoML service; ``model_tag``/``model_store``: in-process), the tier
    thresholds, retries, and the Secret Manager secret holding the service's token (Dataflow)."""

    scorer: str
    url: str | None = None
    model_tag: str = model_store.LATEST
    model_store: str | None = None
    hot: float = 0.6
    warm: float = 0.3
    retries: int = 3
    token_secret: str | None = None


class ScoreLeads(beam.PTransform):
    """Lead -> Lead with score, score_source, model_version and priority_tier."""

    def __init__(self, config: ScoringConfig):
        super().__init__()
        c = config
        if not 0.0 <= c.warm <= c.hot <= 1.0:
            raise ValueError("tier thresholds need 0 <= --warm_threshold <= --hot_threshold <= 1")
        self.handler = make_handler(c.scorer, url=c.url or os.environ.get("LEADFLOW_SCORER_URL"),
                                    model_tag=c.model_tag, model_store=c.model_store, retries=c.retries,
                                    token_secret=c.token_secret)
        self.hot, self.warm = c.hot, c.warm

    def expand(self, leads):
        from scoring.handlers import ScoreWithFallback

        hot, warm = self.hot, self.warm
        return (
            leads
            | "ScoreWithFallback" >> ScoreWithFallback(self.handler, fallback_score, features_for)
            | "WithScore" >> beam.MapTuple(lambda lead, result: with_score(lead, result, hot, warm))
        )
