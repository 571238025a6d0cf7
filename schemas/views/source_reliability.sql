-- Question: which sources send people who convert? Per source, once outcomes are reported (lead_outcomes): how
-- many of the people it sent have a known outcome, how many converted, the conversion rate over every person it
-- sent (any touch) and over the people it sent first (first touch, the primary source), the converted value, and
-- the registry's reliability weight for comparison.
-- Grain: one row per source, all time. The latest outcome per lead counts (a lead reported lost and later won is
-- won). People come from lead_source_history, test leads (leads.is_test) are excluded; rates are NULL until a
-- source has at least one outcome.
WITH latest_outcome AS (
  SELECT lead_id, converted, value
  FROM (
    SELECT lead_id, converted, value,
      ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY outcome_at DESC, reported_by) AS n
    FROM `{project}.{dataset}.lead_outcomes`
  )
  WHERE n = 1
),
sent AS (
  SELECT lead_id, source_id, LOGICAL_OR(is_primary) AS is_primary
  FROM `{project}.{dataset}.lead_source_history`
  GROUP BY lead_id, source_id
),
people AS (
  SELECT s.source_id, s.is_primary, l.source_reliability, o.lead_id IS NOT NULL AS has_outcome,
    IFNULL(o.converted, FALSE) AS converted, o.value
  FROM sent AS s
  JOIN `{project}.{dataset}.leads` AS l ON l.lead_id = s.lead_id
  LEFT JOIN latest_outcome AS o ON o.lead_id = s.lead_id
  WHERE NOT l.is_test
)
SELECT
  source_id,
  COUNT(*) AS people,
  COUNTIF(has_outcome) AS people_with_outcome,
  SAFE_DIVIDE(COUNTIF(has_outcome), COUNT(*)) AS outcome_coverage,
  COUNTIF(converted) AS converted,
  SAFE_DIVIDE(COUNTIF(converted), COUNTIF(has_outcome)) AS conversion_rate,
  COUNTIF(is_primary) AS people_first,
  COUNTIF(is_primary AND has_outcome) AS first_with_outcome,
  COUNTIF(is_primary AND converted) AS converted_first,
  SAFE_DIVIDE(COUNTIF(is_primary AND converted), COUNTIF(is_primary AND has_outcome)) AS conversion_rate_first,
  IFNULL(SUM(IF(converted, value, NULL)), 0) AS converted_value,
  AVG(IF(is_primary, source_reliability, NULL)) AS registered_reliability
FROM people
GROUP BY source_id
