-- Question: what is being rejected, where and why? Per UTC day of rejection: dead letters by pipeline stage,
-- machine-readable reason (error_type) and provider ('(unknown)' when the input never named one), with how many
-- distinct messages and payloads they were (redeliveries of one bad message repeat the payload) and their size.
-- Grain: one row per day of failed_at, stage, error_type and provider.
WITH rejected AS (
  SELECT *, DATE(failed_at) AS failed_date, IFNULL(provider, '(unknown)') AS named_provider
  FROM `{project}.{dataset}.dead_letters`
)
SELECT
  failed_date,
  stage,
  error_type,
  named_provider AS provider,
  COUNT(*) AS dead_letters,
  COUNT(DISTINCT message_id) AS distinct_messages,
  COUNT(DISTINCT payload_sha256) AS distinct_payloads,
  COUNTIF(payload_truncated) AS truncated_payloads,
  SUM(payload_bytes) AS payload_bytes,
  MIN(failed_at) AS first_failed_at,
  MAX(failed_at) AS last_failed_at
FROM rejected
GROUP BY failed_date, stage, error_type, named_provider
