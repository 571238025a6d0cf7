"""A small routing world for dispatcher tests: territory us-east (NY) -> team desk-a, us-other -> desk-b."""

from datetime import timedelta

from tests.helpers.leads import WED_15_UTC, lead_record
from transforms.reference import build_reference, load_reference
from transforms.routing import AgentEvent, Rules, route_lead

BUNDLED = load_reference()
SLA = timedelta(seconds=120)
RULES = Rules(SLA)
T = WED_15_UTC  # Wednesday 10:00 in New York
AGENT_ROW = dict(display_name="", timezone="America/New_York", work_days="Mon-Sun", work_start="00:00",
                 work_end="24:00", available="true", max_open="")


def world(agents: dict[str, dict], overflow: str = ""):
    """Territory us-east (NY) -> team desk-a (overflowing to desk-b when ``overflow``); ``agents``: id -> row."""
    territories = [("territories.csv:2", dict(territory_id="us-east", country="US", match_type="state",
                                              match_values="NY")),
                   ("territories.csv:3", dict(territory_id="us-other", country="US", match_type="country",
                                              match_values="US"))]
    teams = [("teams.csv:2", dict(team_id="desk-a", territory_id="us-east", priority_tier="*",
                                  overflow_team=overflow)),
             ("teams.csv:3", dict(team_id="desk-b", territory_id="us-other", priority_tier="*", overflow_team=""))]
    rows = [(f"agents.csv:{i}", {**AGENT_ROW, "agent_id": a, "team_id": "desk-a", "capacity": "1", **row})
            for i, (a, row) in enumerate(agents.items(), 2)]
    return build_reference(BUNDLED.sources, territories, teams, rows)


def lead(ref, lead_id, at=T, tier=None):
    return route_lead(ref, lead_record(lead_id, state="NY", first_seen_at=at, priority_tier=tier))


def ev(event_id, agent, kind, at, lead_id=None):
    return AgentEvent(event_id, agent, kind, at, lead_id)


