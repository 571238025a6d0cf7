-- Question: how many leads did each source send per day, and how many of them were new people, people another
-- source had sent first (cross-source), repeats of a person this source had already sent (duplicates) and
-- redeliveries (replays)? Recomputed from lead_events, so it always adds up to the events table (it replaces the
-- seed's mutable total/today counters).
-- Grain: one row per received_date, source and provider. received_date is the UTC day the message reached
-- Leadflow (its publish time), the day source_daily_counts.event_date counts by, so the two agree; a lead's own
-- (provider) event time can be older, e.g. rows of a CSV upload. Test leads are counted in every column and also
-- reported separately (test_events). people counts persons: a lead merged into another counts as its survivor.
WITH survivor AS (  -- a merged lead counts as its survivor (the latest merge row of each merged lead)
  SELECT merged_lead_id, into_lead_id FROM (
    SELECT merged_lead_id, into_lead_id,
      ROW_NUMBER() OVER (PARTITION BY merged_lead_id ORDER BY merged_at DESC, processed_at DESC) AS n
    FROM `{project}.{dataset}.lead_merges`
  )
  WHERE n = 1
)
SELECT
  DATE(publish_time) AS received_date,
  source_id,
  provider,
  COUNT(*) AS events,
  COUNTIF(outcome = 'new') AS new_leads,
  COUNTIF(outcome = 'cross_source') AS cross_source,
  COUNTIF(outcome = 'duplicate_same_source') AS duplicates,
  COUNTIF(outcome = 'replay') AS replays,
  COUNTIF(is_test) AS test_events,
  COUNT(DISTINCT IFNULL(s.into_lead_id, e.lead_id)) AS people,
  COUNTIF(NOT source_verified) AS unverified_source_events
FROM `{project}.{dataset}.lead_events` AS e
LEFT JOIN survivor AS s ON s.merged_lead_id = e.lead_id
GROUP BY received_date, source_id, provider
