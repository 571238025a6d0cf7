-- Question: what is the score mix of each source? How many of its leads are hot, warm or cold, how their scores
-- spread over ten 0.1-wide buckets, and how many were scored by the model rather than the rule-based fallback.
-- Grain: one row per UTC day of first sighting, primary source, priority tier, score source and score bucket;
-- every column is additive, so any date range, source or tier roll-up is a SUM (avg_score: weight by leads).
-- score_bucket is the bucket's lower bound (0.0 .. 0.9; a score of 1.0 falls in 0.9); leads without a score
-- have priority_tier 'unscored', score_source 'none' and a NULL bucket. Test leads and leads merged into another
-- person (lead_merges) are excluded: one row per person.
WITH scored AS (
  SELECT
    DATE(first_seen_at) AS lead_date,
    primary_source,
    IFNULL(priority_tier, 'unscored') AS tier,
    IFNULL(score_source, 'none') AS scored_by,
    CAST(FLOOR(LEAST(score, 0.999999) * 10) AS INT64) / 10 AS bucket,
    score
  FROM `{project}.{dataset}.leads`
  WHERE NOT is_test
    AND lead_id NOT IN (SELECT merged_lead_id FROM `{project}.{dataset}.lead_merges`)
)
SELECT
  lead_date,
  primary_source,
  tier AS priority_tier,
  scored_by AS score_source,
  bucket AS score_bucket,
  COUNT(*) AS leads,
  SUM(score) AS score_sum,
  AVG(score) AS avg_score
FROM scored
GROUP BY lead_date, primary_source, tier, scored_by, bucket
