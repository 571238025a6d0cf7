-- Question: what does each lead look like now? The living lead record (the lead-master row): status, assigned
-- agent, attempts, primary and all sources, latest score and tier, first and last seen; a merged-away lead has
-- status 'merged' and names its survivor, whose events and sources include the merged lead's.
-- Grain: one row per lead (live or merged). Built from leads (the first sighting), lead_versions (every change),
-- lead_events and lead_merges, each de-duplicated by its row key. The same fold as transforms/lead_record.py
-- (bounded runs write it as leads_current.jsonl). Count people with WHERE status != 'merged'.
WITH lead_rows AS (
  SELECT * EXCEPT (n) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY processed_at) AS n
    FROM `{project}.{dataset}.leads`
  )
  WHERE n = 1
),
survivor AS (
  SELECT merged_lead_id, into_lead_id FROM (
    SELECT merged_lead_id, into_lead_id,
      ROW_NUMBER() OVER (PARTITION BY merged_lead_id ORDER BY merged_at DESC, processed_at DESC) AS n
    FROM `{project}.{dataset}.lead_merges`
  )
  WHERE n = 1
),
versions AS (
  SELECT * EXCEPT (n) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY version_id ORDER BY processed_at) AS n
    FROM `{project}.{dataset}.lead_versions`
  )
  WHERE n = 1
),
events AS (
  SELECT DISTINCT event_id, lead_id, source_id, outcome, event_time
  FROM `{project}.{dataset}.lead_events`
),
-- which leads' events and versions count for a row: a live lead's own and its merged leads'; a merged lead's own
scope AS (
  SELECT l.lead_id AS row_id, l.lead_id AS member_id FROM lead_rows AS l
  UNION ALL
  SELECT s.into_lead_id, s.merged_lead_id FROM survivor AS s
  JOIN lead_rows AS l ON l.lead_id = s.into_lead_id
  WHERE s.into_lead_id NOT IN (SELECT merged_lead_id FROM survivor)
),
primary_source AS (
  SELECT lead_id, primary_source, primary_provider, first_seen_at FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY first_seen_at, correction_rank, corrected_at DESC) AS n
    FROM (
      SELECT lead_id, primary_source, primary_provider, first_seen_at, 1 AS correction_rank,
        TIMESTAMP '1970-01-01 00:00:00+00' AS corrected_at
      FROM lead_rows
      UNION ALL
      SELECT lead_id, primary_source, primary_provider, first_seen_at, 0, IFNULL(processed_at, changed_at)
      FROM versions
      WHERE change = 'primary_corrected' AND first_seen_at IS NOT NULL
    )
  )
  WHERE n = 1
),
scored AS (
  SELECT lead_id, score, priority_tier, score_source FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY changed_at DESC, processed_at DESC, version_id DESC) AS n
    FROM versions
    WHERE change = 'scored'
  )
  WHERE n = 1
),
routing AS (
  SELECT * FROM versions
  WHERE change IN ('assigned', 'reassigned', 'accepted', 'rejected', 'expired', 'manual_review', 'queued',
                   'overflowed', 'closed')
),
routing_latest AS (
  SELECT lead_id, IF(change = 'manual_review', NULL, agent_id) AS agent_id FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY changed_at DESC, processed_at DESC, version_id DESC) AS n
    FROM routing
  )
  WHERE n = 1
),
routing_team AS (
  SELECT lead_id, team FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY changed_at DESC, processed_at DESC, version_id DESC) AS n
    FROM routing
    WHERE team IS NOT NULL
  )
  WHERE n = 1
),
routing_status AS (
  SELECT lead_id, status FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY changed_at DESC, processed_at DESC, version_id DESC) AS n
    FROM routing
    WHERE status IS NOT NULL
  )
  WHERE n = 1
),
attempts AS (
  SELECT lead_id, MAX(attempt) AS attempts FROM routing GROUP BY lead_id
),
row_events AS (
  SELECT sc.row_id, COUNT(e.event_id) AS events, MAX(e.event_time) AS last_event_at
  FROM scope AS sc
  JOIN events AS e ON e.lead_id = sc.member_id
  GROUP BY sc.row_id
),
row_sources AS (
  SELECT row_id, ARRAY_AGG(source_id ORDER BY source_id) AS sources, COUNT(*) AS source_count FROM (
    SELECT DISTINCT sc.row_id, e.source_id
    FROM scope AS sc
    JOIN events AS e ON e.lead_id = sc.member_id
    WHERE e.outcome != 'replay'
    UNION DISTINCT
    SELECT lead_id, primary_source FROM primary_source
  )
  GROUP BY row_id
),
row_changes AS (
  SELECT sc.row_id, MAX(v.changed_at) AS last_change_at
  FROM scope AS sc
  JOIN versions AS v ON v.lead_id = sc.member_id
  GROUP BY sc.row_id
),
absorbed AS (
  SELECT row_id, ARRAY_AGG(member_id ORDER BY member_id) AS merged_lead_ids
  FROM scope
  WHERE row_id != member_id
  GROUP BY row_id
)
SELECT
  l.lead_id,
  CASE
    WHEN s.into_lead_id IS NOT NULL THEN 'merged'
    WHEN rs.status IS NOT NULL THEN rs.status
    WHEN sc.score_source IS NOT NULL THEN 'scored'
    ELSE 'new'
  END AS status,
  s.into_lead_id AS merged_into,
  IFNULL(a.merged_lead_ids, []) AS merged_lead_ids,
  rl.agent_id,
  rt.team,
  IFNULL(att.attempts, 0) AS attempts,
  p.primary_source,
  p.primary_provider,
  src.sources,
  src.source_count,
  IFNULL(ev.events, 0) AS events,
  sc.score,
  sc.priority_tier,
  sc.score_source,
  p.first_seen_at,
  IFNULL(ev.last_event_at, p.first_seen_at) AS last_seen_at,
  l.phone_e164,
  l.email,
  l.full_name,
  l.is_test,
  GREATEST(IFNULL(ch.last_change_at, p.first_seen_at), IFNULL(ev.last_event_at, p.first_seen_at)) AS updated_at
FROM lead_rows AS l
LEFT JOIN survivor AS s ON s.merged_lead_id = l.lead_id
JOIN primary_source AS p ON p.lead_id = l.lead_id
LEFT JOIN scored AS sc ON sc.lead_id = l.lead_id
LEFT JOIN routing_latest AS rl ON rl.lead_id = l.lead_id
LEFT JOIN routing_team AS rt ON rt.lead_id = l.lead_id
LEFT JOIN routing_status AS rs ON rs.lead_id = l.lead_id
LEFT JOIN attempts AS att ON att.lead_id = l.lead_id
LEFT JOIN row_events AS ev ON ev.row_id = l.lead_id
LEFT JOIN row_sources AS src ON src.row_id = l.lead_id
LEFT JOIN row_changes AS ch ON ch.row_id = l.lead_id
LEFT JOIN absorbed AS a ON a.row_id = l.lead_id
