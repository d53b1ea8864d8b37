"""Read-model statements keep to the right index while their tables grow."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.readmodels.runs import _END

_NEW_RUNS = """
INSERT INTO runs (tenant_id, run_id, flow_id, revision, status, trigger_kind,
                  trigger_source, triggered_at, deadline, steps, version)
SELECT '{tenant}', 'run_' || n, 'flow_' || (n % 4), 1, 'running', 'manual', 'test',
       now(), now() + interval '1 hour', 0, n
FROM generate_series({first}, {last}) AS n
"""


def _ending(
    order: Sequence[str], run: int, version: int, tenant: str = "tenant"
) -> str:
    """Arguments of ``_END`` for one run, as SQL, in the statement's order."""
    given = {
        "end_status": "'completed'",
        "end_finished_at": "now()",
        "param_1": "1000",
        "end_steps": "1",
        "end_version": str(version),
        "key_tenant": f"'{tenant}'",
        "key_run": f"'run_{run}'",
    }
    return ", ".join(given.get(name, "NULL") for name in order)


async def test_a_run_is_ended_through_its_key_after_the_table_grew(
    engine: AsyncEngine,
) -> None:
    # Postgres would keep a generic plan after five executions. Made while the
    # table held ten runs, that plan scanned every run of the tenant for each
    # update once the table had grown (nextra/readmodels/database.py).
    compiled = _END.compile(dialect=engine.dialect)
    order = compiled.positiontup or []
    async with engine.connect() as connection:
        await connection.exec_driver_sql(
            _NEW_RUNS.format(tenant="tenant", first=1, last=10)
        )
        await connection.exec_driver_sql(f"PREPARE ending AS {compiled}")
        for run in range(1, 9):
            await connection.exec_driver_sql(
                f"EXECUTE ending({_ending(order, run, 100)})"
            )
        await connection.exec_driver_sql(
            _NEW_RUNS.format(tenant="tenant", first=11, last=5000)
        )
        explained = await connection.exec_driver_sql(
            f"EXPLAIN EXECUTE ending({_ending(order, 4000, 10_000)})"
        )
        plan = "\n".join(row[0] for row in explained)

    assert "pk_runs" in plan, plan


async def test_a_run_of_a_tenant_new_to_the_statistics_is_ended_through_its_key(
    engine: AsyncEngine,
) -> None:
    # Statistics that have not seen a tenant estimate one row for it. Any index
    # that began with tenant_id then cost the same as the key, and the flood of
    # a new tenant's runs was ended by scans of all its runs.
    compiled = _END.compile(dialect=engine.dialect)
    order = compiled.positiontup or []
    async with engine.connect() as connection:
        await connection.exec_driver_sql(
            _NEW_RUNS.format(tenant="known", first=1, last=5000)
        )
        await connection.exec_driver_sql("ANALYZE runs")
        await connection.exec_driver_sql(
            _NEW_RUNS.format(tenant="new", first=1, last=5000)
        )
        explained = await connection.exec_driver_sql(
            "EXPLAIN UPDATE runs SET steps = 1 WHERE tenant_id = 'new' "
            "AND run_id = 'run_42' AND version < 10000"
        )
        simple = "\n".join(row[0] for row in explained)
        await connection.exec_driver_sql(f"PREPARE ending AS {compiled}")
        explained = await connection.exec_driver_sql(
            f"EXPLAIN EXECUTE ending({_ending(order, 42, 10_000, tenant='new')})"
        )
        ending = "\n".join(row[0] for row in explained)

    assert "pk_runs" in simple, simple
    assert "pk_runs" in ending, ending
