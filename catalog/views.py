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
    "failures_by_reason": """
        SELECT 'job' AS source, status, error_code,
               COALESCE(error, success_flag, status) AS reason, COUNT(*) AS n
        FROM jobs
        WHERE status IN ('failed', 'unknown', 'not_submitted', 'expired')
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
    """,
}
