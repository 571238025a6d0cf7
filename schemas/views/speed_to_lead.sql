-- Question: how fast do teams get to their leads? Per team and day: seconds from the lead's event time to its
-- first assignment and to its first acceptance by an agent, and from first assignment to acceptance, as exact
-- medians (p50) and 90th percentiles (p90); how many assigned leads were accepted, re-assigned or let expire.
-- Grain: one row per UTC day of the lead's event time and team of the lead's first assignment (action
-- 'assigned'). Leads never assigned (manual review only) are not counted. Percentiles ignore leads without an
-- acceptance. Durations are exact seconds with fractions (microsecond differences). Built from lead_assignments
-- (one row per assignment step).
WITH steps AS (
  SELECT DISTINCT assignment_event_id, lead_id, action, attempt, team, lead_event_time, action_at
  FROM `{project}.{dataset}.lead_assignments`
),
first_assignment AS (
  SELECT lead_id, team, lead_event_time, action_at AS assigned_at
  FROM (
    SELECT lead_id, team, lead_event_time, action_at,
      ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY action_at, attempt, assignment_event_id) AS n
    FROM steps
    WHERE action = 'assigned'
  )
  WHERE n = 1
),
per_lead_steps AS (
  SELECT
    lead_id,
    MIN(IF(action = 'accepted', action_at, NULL)) AS accepted_at,
    COUNTIF(action = 'reassigned') AS reassignments,
    COUNTIF(action = 'expired') AS expirations
  FROM steps
  GROUP BY lead_id
),
per_lead AS (
  SELECT
    f.lead_id,
    f.team,
    DATE(IFNULL(f.lead_event_time, f.assigned_at)) AS lead_date,
    TIMESTAMP_DIFF(f.assigned_at, f.lead_event_time, MICROSECOND) / 1000000 AS to_assignment_s,
    TIMESTAMP_DIFF(s.accepted_at, f.lead_event_time, MICROSECOND) / 1000000 AS to_acceptance_s,
    TIMESTAMP_DIFF(s.accepted_at, f.assigned_at, MICROSECOND) / 1000000 AS assignment_to_acceptance_s,
    s.accepted_at IS NOT NULL AS accepted,
    s.reassignments,
    s.expirations
  FROM first_assignment AS f
  JOIN per_lead_steps AS s ON s.lead_id = f.lead_id
),
with_percentiles AS (
  SELECT
    *,
    PERCENTILE_CONT(to_assignment_s, 0.5) OVER w AS p50_to_assignment_s,
    PERCENTILE_CONT(to_assignment_s, 0.9) OVER w AS p90_to_assignment_s,
    PERCENTILE_CONT(to_acceptance_s, 0.5) OVER w AS p50_to_acceptance_s,
    PERCENTILE_CONT(to_acceptance_s, 0.9) OVER w AS p90_to_acceptance_s,
    PERCENTILE_CONT(assignment_to_acceptance_s, 0.5) OVER w AS p50_assignment_to_acceptance_s,
    PERCENTILE_CONT(assignment_to_acceptance_s, 0.9) OVER w AS p90_assignment_to_acceptance_s
  FROM per_lead
  WINDOW w AS (PARTITION BY lead_date, team)
)
SELECT
  lead_date,
  team,
  COUNT(*) AS leads_assigned,
  COUNTIF(accepted) AS leads_accepted,
  SAFE_DIVIDE(COUNTIF(accepted), COUNT(*)) AS acceptance_rate,
  COUNTIF(reassignments > 0) AS leads_reassigned,
  SUM(expirations) AS expired_assignments,
  MAX(p50_to_assignment_s) AS p50_to_assignment_s,
  MAX(p90_to_assignment_s) AS p90_to_assignment_s,
  MAX(p50_to_acceptance_s) AS p50_to_acceptance_s,
  MAX(p90_to_acceptance_s) AS p90_to_acceptance_s,
  MAX(p50_assignment_to_acceptance_s) AS p50_assignment_to_acceptance_s,
  MAX(p90_assignment_to_acceptance_s) AS p90_assignment_to_acceptance_s
FROM with_percentiles
GROUP BY lead_date, team
