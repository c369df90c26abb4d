-- Example queries over the stemcat catalog.
-- Run one with `stemcat sql "<query>"`, or open DATA_DIR/catalog.duckdb in any DuckDB client
-- (e.g. `duckdb -readonly stemcat-data/catalog.duckdb`). Tables: tracks, jobs, stems, spend,
-- runs, callbacks, rejects; report views: spend_by_day, spend_by_type, spend_by_run,
-- stems_summary, jobs_by_status, failures_by_reason. Times are UTC.

-- name: spend_by_day
-- Credits committed per UTC day and separation type (refused requests net to zero).
SELECT day, separation_type, credits, jobs
FROM spend_by_day
ORDER BY day, separation_type;

-- name: balance_mismatch
-- Runs whose ledger spend differs from the drop in the credit balance they observed
-- (difference = credits + balance_delta; negative means the balance fell by more than the ledger explains).
SELECT run_id, started_at, credits, balance_delta, difference
FROM spend_by_run
WHERE difference <> 0
ORDER BY started_at;

-- name: silent_stems
-- Downloaded stems that are effectively silent, with their song.
SELECT s.audio_id, t.title, s.separation_type, s.stem, s.path, s.rms_dbfs
FROM stems AS s
LEFT JOIN tracks AS t USING (audio_id)
WHERE s.silent
ORDER BY s.audio_id, s.stem;

-- name: expiring_soon
-- Stems not downloaded yet whose links expire within three days (or already have): fetch them now.
SELECT audio_id, separation_type, stem, url_expires_at,
       url_expires_at - now() AS time_left
FROM stems
WHERE status = 'pending'
  AND url_expires_at < now() + INTERVAL 3 DAY
ORDER BY url_expires_at;

-- name: failures_by_reason
-- Why things failed: jobs (API failures, refused or ambiguous submits), stems, and manifest rows.
SELECT source, status, error_code, reason, n
FROM failures_by_reason
ORDER BY n DESC, source, reason;

-- name: hours_per_stem
-- Hours of downloaded audio per stem name, across separation types.
SELECT stem, round(sum(duration_s) / 3600, 4) AS hours, count(*) AS files
FROM stems
WHERE status = 'downloaded'
GROUP BY stem
ORDER BY hours DESC, stem;

-- name: training_files
-- Files for a dataset split: downloaded, not silent, with the song's pinned split.
SELECT t.split, s.audio_id, s.stem, s.path, s.duration_s
FROM stems AS s
JOIN tracks AS t USING (audio_id)
WHERE s.status = 'downloaded' AND NOT coalesce(s.silent, false) AND t.split = 'train'
ORDER BY s.audio_id, s.stem;

-- name: clipped_stems
-- Stems with more than 0.1 % of samples at full scale.
SELECT audio_id, stem, peak_dbfs, clipped_fraction
FROM stems
WHERE clipped_fraction > 0.001
ORDER BY clipped_fraction DESC;
