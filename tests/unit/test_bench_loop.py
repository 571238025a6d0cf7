"""The benchmark's plain-loop reference (``make bench``'s ``loop_full``) still calls the stages the way the pipeline
does: a change of a stage's signature breaks this test, not a bench run someone starts later."""

from __future__ import annotations

from pipelines.dev.bench import measure_loop
from pipelines.synthetic import generate


def test_the_full_loop_runs_every_stage_over_generated_messages(tmp_path):
    path = tmp_path / "messages.jsonl"
    manifest = generate.write(path, 60, seed=5)
    result = measure_loop(str(path), full=True)
    assert result["messages"] == manifest["messages"]
    assert result["new_leads"] > 0 and result["stage_us_per_new_lead"]["assign"] > 0
