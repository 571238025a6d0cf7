"""leadflow simulate-desk on a small day: the played day and the bounded routing stage make the same decisions
under both rule sets, the desk rules keep every agent within its cap, and the figures come from the rows."""

import json

import pytest

from pipelines import cli
from pipelines.dev import desk_sim


@pytest.mark.slow
def test_simulated_day_runs_both_rule_sets_through_the_bounded_pipeline(tmp_path, capsys):
    assert cli.main(["simulate-desk", "--leads", "120", "--seed", "3", "--json", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    today, desk = report["today"], report["desk"]
    assert today["pipeline_agrees"] and desk["pipeline_agrees"]
    assert desk["agents_over_cap"] == 0
    assert all(w["max_open_held"] <= w["max_open"] for w in desk["worst_load"])
    assert today["actions"].get("queued", 0) == 0 and desk["actions"]["queued"] > 0
    assert set(today["manual_review"]) <= {"no_available_agent", "all_agents_offered"}
    assert set(desk["manual_review"]) <= {"queue_timeout", "all_agents_offered", "no_agents_in_team"}
    for f in (today, desk):
        assert f["leads_offered"] + f["manual_review_total"] >= 120 - f["actions"].get("queued", 0)
        assert f["first_offer_p50_s"] <= f["first_offer_p90_s"] and f["acceptance_p50_s"] <= f["acceptance_p90_s"]
    rows = list(desk_sim.read_table(str(tmp_path / "desk"), "lead_assignments"))
    assert len(rows) == sum(desk["actions"].values())


def test_simulate_desk_refuses_an_empty_day():
    with pytest.raises(SystemExit):
        desk_sim.main(["--leads", "0"])
