"""A log of every admission the PostgreSQL rate store decides, kept by a trigger (the store's own log
is pruned as it goes), so tests can judge windows on the database's clock."""

from __future__ import annotations

import asyncio

from stemcat.client.ratelimit.rules import PacingState

AUDIT = (
    "CREATE TABLE admission_audit (seq bigserial PRIMARY KEY, ticket bigint NOT NULL, at float8 NOT NULL)",
    "CREATE FUNCTION audit_admission() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN INSERT INTO admission_audit (ticket, at) VALUES (NEW.ticket, NEW.at); RETURN NULL; END $$",
    "CREATE TRIGGER audit AFTER INSERT OR UPDATE ON rate_admissions FOR EACH ROW EXECUTE FUNCTION audit_admission()",
)


async def open_budget(url: str, budget: str) -> PacingState:
    """The budget's state; creates the store's tables on first use."""
    from stemcat.client.ratelimit.stores.postgres import PostgresAdmissionStore

    store = PostgresAdmissionStore(url, budget)
    try:
        return await store.state()
    finally:
        await store.aclose()


def install_admission_audit(url: str, budget: str) -> None:
    """Create the rate store's tables (as the first run would) and the audit trigger on them."""
    import psycopg

    asyncio.run(open_budget(url, budget))
    with psycopg.connect(url, autocommit=True) as con:
        for statement in AUDIT:
            con.execute(statement)


def admission_times(url: str) -> list[float]:
    """When the database last logged each admission (a ticket re-logged by an update counts once)."""
    import psycopg

    with psycopg.connect(url) as con:
        rows = con.execute("SELECT DISTINCT ON (ticket) at FROM admission_audit ORDER BY ticket, seq DESC").fetchall()
    return [at for (at,) in rows]
