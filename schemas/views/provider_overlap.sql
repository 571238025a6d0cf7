-- Question: which sources send the same people? For every ordered pair of sources (source_a, source_b): how many
-- people both sent (shared_people), how many of those source_a sent first, and what share of source_a's people
-- source_b also sent. Read a row as "of source_a's people, shared_people also came from source_b".
-- Grain: one row per ordered pair with at least one shared person, both directions; the diagonal
-- (source_a = source_b) holds each source's own number of people. All time, from lead_source_history
-- (one row per person and source); test leads are included (the history does not mark them). A lead merged into
-- another counts as its survivor (lead_merges), so people are persons after merges.
WITH survivor AS (  -- a merged lead counts as its survivor (the latest merge row of each merged lead)
  SELECT merged_lead_id, into_lead_id FROM (
    SELECT merged_lead_id, into_lead_id,
      ROW_NUMBER() OVER (PARTITION BY merged_lead_id ORDER BY merged_at DESC, processed_at DESC) AS n
    FROM `{project}.{dataset}.lead_merges`
  )
  WHERE n = 1
),
sent AS (
  SELECT lead_id, source_id, MIN(received_at) AS received_at
  FROM (
    SELECT IFNULL(s.into_lead_id, h.lead_id) AS lead_id, h.source_id, h.received_at
    FROM `{project}.{dataset}.lead_source_history` AS h
    LEFT JOIN survivor AS s ON s.merged_lead_id = h.lead_id
  )
  GROUP BY lead_id, source_id
),
per_source AS (
  SELECT source_id, COUNT(*) AS people
  FROM sent
  GROUP BY source_id
)
SELECT
  a.source_id AS source_a,
  b.source_id AS source_b,
  COUNT(*) AS shared_people,
  COUNTIF(a.received_at < b.received_at) AS source_a_first,
  p.people AS source_a_people,
  SAFE_DIVIDE(COUNT(*), p.people) AS share_of_source_a
FROM sent AS a
JOIN sent AS b ON a.lead_id = b.lead_id
JOIN per_source AS p ON p.source_id = a.source_id
GROUP BY source_a, source_b, source_a_people
