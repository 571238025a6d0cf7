-- Question: why did this agent get this lead (or why did it wait, or go to manual review)? One row per routing
-- decision: the lead, team, step (assigned, reassigned, queued, manual_review), the agent chosen, the free
-- agents that were considered, every other agent of the team with the reason it was skipped (unavailable, away,
-- offline, already_offered, off_shift, at_cap) and a count per reason. Grain: one row per lead_assignments step
-- that carries a decision (duplicated streaming inserts counted once). Built from lead_assignments.decision.
WITH decisions AS (
  SELECT DISTINCT assignment_event_id, lead_id, action, attempt, team, agent_id, reason, priority_tier,
    lead_event_time, action_at, decision
  FROM `{project}.{dataset}.lead_assignments`
  WHERE decision IS NOT NULL AND action IN ('assigned', 'reassigned', 'queued', 'manual_review')
)
SELECT
  assignment_event_id,
  lead_id,
  action_at,
  team,
  action,
  attempt,
  priority_tier,
  agent_id AS chosen_agent,
  reason,
  JSON_VALUE_ARRAY(decision, '$.candidates') AS candidates,
  ARRAY_LENGTH(JSON_QUERY_ARRAY(decision, '$.candidates')) AS candidate_count,
  JSON_QUERY(decision, '$.skipped') AS skipped,
  ARRAY_LENGTH(JSON_QUERY_ARRAY(decision, '$.skipped')) AS skipped_count,
  (SELECT COUNTIF(JSON_VALUE(s, '$.reason') = 'unavailable') FROM UNNEST(JSON_QUERY_ARRAY(decision, '$.skipped')) AS s)
    AS skipped_unavailable,
  (SELECT COUNTIF(JSON_VALUE(s, '$.reason') = 'away') FROM UNNEST(JSON_QUERY_ARRAY(decision, '$.skipped')) AS s)
    AS skipped_away,
  (SELECT COUNTIF(JSON_VALUE(s, '$.reason') = 'offline') FROM UNNEST(JSON_QUERY_ARRAY(decision, '$.skipped')) AS s)
    AS skipped_offline,
  (SELECT COUNTIF(JSON_VALUE(s, '$.reason') = 'already_offered')
   FROM UNNEST(JSON_QUERY_ARRAY(decision, '$.skipped')) AS s) AS skipped_already_offered,
  (SELECT COUNTIF(JSON_VALUE(s, '$.reason') = 'off_shift') FROM UNNEST(JSON_QUERY_ARRAY(decision, '$.skipped')) AS s)
    AS skipped_off_shift,
  (SELECT COUNTIF(JSON_VALUE(s, '$.reason') = 'at_cap') FROM UNNEST(JSON_QUERY_ARRAY(decision, '$.skipped')) AS s)
    AS skipped_at_cap,
  TIMESTAMP_DIFF(action_at, lead_event_time, MICROSECOND) / 1000000 AS since_lead_s
FROM decisions
