"""Report views over the catalog tables, created both in ``catalog.duckdb`` and by ``open_catalog``.

Days are UTC calendar days whatever the reader's time zone (``make_timestamp(epoch_us(...))``
yields a naive UTC timestamp). Spend is netted per job before counting, so a rejected attempt
contributes neither credits nor a job.
"""

from __future__ import annotations

REPORT_VIEWS: dict[str, str] = {
    "spend_by_day": """
        WITH per_job AS (
            SELECT CAST(make_timestamp(epoch_us("at")) AS DATE) AS day, separation_type, job_id,
                   SUM(credits) AS credits
            FROM spend
            GROUP BY ALL
        )
        SELECT day, separation_type,
               CAST(SUM(credits) AS BIGINT) AS credits,
               COUNT(*) FILTER (WHERE credits > 0) AS jobs
        FROM per_job
        GROUP BY day, separation_type
    """,
    "spend_by_type": """
        WITH per_job AS (
            SELECT separation_type, job_id, SUM(credits) AS credits FROM spend GROUP BY ALL
        )
        SELECT separation_type,
               CAST(SUM(credits) AS BIGINT) AS credits,
               COUNT(*) FILTER (WHERE credits > 0) AS jobs
        FROM per_job
        GROUP BY separation_type
    """,
    # difference = credits + balance_delta: 0 when the ledger matches the balance drop the run saw.
    "spend_by_run": """
        WITH per_run AS (
            SELECT run_id, CAST(SUM(credits) AS BIGINT) AS credits FROM spend GROUP BY run_id
        )
        SELECT COALESCE(r.run_id, p.run_id) AS run_id,
               r.started_at,
               r.status,
               COALESCE(p.credits, 0) AS credits,
               r.balance_delta,
               COALESCE(p.credits, 0) + r.balance_delta AS difference
        FROM runs AS r
        FULL OUTER JOIN per_run AS p ON p.run_id IS NOT DISTINCT FROM r.run_id
    """,
    "stems_summary": """
        SELECT separation_type, stem,
               COUNT(*) AS n,
               COUNT(*) FILTER (WHERE status = 'downloaded') AS downloaded,
               COALESCE(SUM(duration_s) FILTER (WHERE status = 'downloaded'), 0) / 3600.0 AS hours,
               COUNT(*) FILTER (WHERE silent) AS silent
        FROM stems
        GROUP BY separation_type, stem
    """,
    "jobs_by_status": """
        SELECT separation_type, status, COUNT(*) AS jobs
        FROM jobs
        GROUP BY separation_type, status
    """,
    # Every attempt counts, including ones a later attempt made good: this is the failure history.
    # Quality rows: separations whose stems do not add back up to the mix, and incomplete analyses.
    "failures_by_reason": """
        SELECT 'job' AS source, status, error_code,
               COALESCE(error, success_flag, status) AS reason, COUNT(*) AS n
        FROM jobs
        WHERE status IN ('failed', 'unknown', 'not_submitted', 'expired', 'incomplete')
        GROUP BY ALL
        UNION ALL
        SELECT 'stem' AS source, status, CAST(NULL AS BIGINT) AS error_code,
               COALESCE(error, status) AS reason, COUNT(*) AS n
        FROM stems
        WHERE status IN ('failed', 'expired')
        GROUP BY ALL
        UNION ALL
        SELECT 'manifest' AS source, 'rejected' AS status, CAST(NULL AS BIGINT) AS error_code,
               reason, COUNT(*) AS n
        FROM rejects
        GROUP BY ALL
        UNION ALL
        SELECT 'quality' AS source, 'low_snr' AS status, CAST(NULL AS BIGINT) AS error_code,
               'stems do not add back up to the mix (reconstruction SNR below the threshold)' AS reason,
               COUNT(*) AS n
        FROM jobs
        WHERE low_snr
        HAVING COUNT(*) > 0
        UNION ALL
        SELECT 'quality' AS source, 'analysis_incomplete' AS status, CAST(NULL AS BIGINT) AS error_code,
               analysis_error AS reason, COUNT(*) AS n
        FROM jobs
        WHERE analysis_error IS NOT NULL
        GROUP BY ALL
    """,
    # ISO weeks (starting Monday, UTC), netted per job like spend_by_day.
    "spend_by_week": """
        WITH per_job AS (
            SELECT CAST(date_trunc('week', make_timestamp(epoch_us("at"))) AS DATE) AS week,
                   separation_type, job_id, SUM(credits) AS credits
            FROM spend
            GROUP BY ALL
        )
        SELECT week, separation_type,
               CAST(SUM(credits) AS BIGINT) AS credits,
               COUNT(*) FILTER (WHERE credits > 0) AS jobs
        FROM per_job
        GROUP BY week, separation_type
    """,
    # Tags are the comma-separated tracks.tags (the manifest's tags column, else the API's) plus a
    # manifest column named "tag" (kept in tracks.metadata). A job counts under each of its song's
    # tags, so the rows of several tags add up to more than the total.
    "spend_by_tag": """
        WITH per_job AS (
            SELECT job_id, audio_id, separation_type, SUM(credits) AS credits FROM spend GROUP BY ALL
        ),
        track_tags AS (
            SELECT DISTINCT audio_id, tag FROM (
                SELECT audio_id, lower(trim(unnest(string_split(tags, ',')))) AS tag FROM tracks
                UNION ALL
                SELECT audio_id, lower(trim(json_extract_string(metadata, '$.tag'))) AS tag FROM tracks
            )
            WHERE tag IS NOT NULL AND tag <> ''
        )
        SELECT COALESCE(t.tag, '(untagged)') AS tag, p.separation_type,
               CAST(SUM(p.credits) AS BIGINT) AS credits,
               COUNT(*) FILTER (WHERE p.credits > 0) AS jobs
        FROM per_job AS p
        LEFT JOIN track_tags AS t USING (audio_id)
        GROUP BY ALL
    """,
    # Credits committed (failed attempts included) per minute of downloaded stem audio that is not
    # silent; "all" sums the types. Stems not analysed yet are counted apart, never as usable.
    "credits_per_usable_minute": """
        WITH credits AS (
            SELECT separation_type, SUM(credits) AS credits FROM spend GROUP BY separation_type
        ),
        audio AS (
            SELECT separation_type,
                   COALESCE(SUM(duration_s) FILTER (WHERE NOT silent), 0) / 60.0 AS usable_minutes,
                   COALESCE(SUM(duration_s) FILTER (WHERE silent), 0) / 60.0 AS silent_minutes,
                   COALESCE(SUM(duration_s) FILTER (WHERE silent IS NULL), 0) / 60.0 AS unanalysed_minutes
            FROM stems
            WHERE status = 'downloaded'
            GROUP BY separation_type
        ),
        by_type AS (
            SELECT COALESCE(c.separation_type, a.separation_type) AS separation_type,
                   CAST(COALESCE(c.credits, 0) AS BIGINT) AS credits,
                   COALESCE(a.usable_minutes, 0) AS usable_minutes,
                   COALESCE(a.silent_minutes, 0) AS silent_minutes,
                   COALESCE(a.unanalysed_minutes, 0) AS unanalysed_minutes
            FROM credits AS c
            FULL OUTER JOIN audio AS a ON a.separation_type = c.separation_type
        ),
        with_total AS (
            SELECT * FROM by_type
            UNION ALL
            SELECT 'all', CAST(SUM(credits) AS BIGINT), SUM(usable_minutes), SUM(silent_minutes),
                   SUM(unanalysed_minutes)
            FROM by_type
            HAVING COUNT(*) > 0
        )
        SELECT *, CASE WHEN usable_minutes > 0 THEN credits / usable_minutes END AS credits_per_usable_minute
        FROM with_total
    """,
    # Links that still work but whose stems are not on disk yet: days_left until each expires.
    "expiring_stems": """
        SELECT audio_id, separation_type, stem, job_id, status, url_expires_at,
               (epoch(url_expires_at) - epoch(now())) / 86400.0 AS days_left
        FROM stems
        WHERE status IN ('pending', 'failed') AND url_expires_at > now()
    """,
    "quality_by_stem": """
        SELECT separation_type, stem,
               COUNT(*) FILTER (WHERE silent IS NOT NULL) AS analysed,
               COUNT(*) FILTER (WHERE silent) AS silent,
               median(lufs) FILTER (WHERE NOT silent) AS median_lufs,
               median(rms_dbfs) FILTER (WHERE NOT silent) AS median_rms_dbfs,
               max(peak_dbfs) FILTER (WHERE NOT silent) AS max_peak_dbfs,
               COUNT(*) FILTER (WHERE clipped_fraction > 0) AS clipped,
               max(abs(duration_diff_s)) AS max_abs_duration_diff_s
        FROM stems
        WHERE status = 'downloaded'
        GROUP BY separation_type, stem
    """,
    "track_quality": """
        SELECT j.audio_id, t.title, j.separation_type, j.job_id, j.reconstruction_snr_db, j.low_snr,
               j.mix_duration_s, s.stems, s.silent_stems, s.max_abs_duration_diff_s, j.analysis_error,
               j.analyzed_at
        FROM jobs AS j
        LEFT JOIN tracks AS t USING (audio_id)
        LEFT JOIN (
            SELECT job_id, COUNT(*) AS stems, COUNT(*) FILTER (WHERE silent) AS silent_stems,
                   max(abs(duration_diff_s)) AS max_abs_duration_diff_s
            FROM stems
            GROUP BY job_id
        ) AS s USING (job_id)
        WHERE j.analyzed_at IS NOT NULL
    """,
}
