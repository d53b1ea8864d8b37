"""Read-model statements keep to the right index while their tables grow."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nextra.readmodels.runs import _END

_ARGUMENTS = {
    "end_status": "'completed'",
    "end_finished_at": "now()",
    "param_1": "1000",
    "end_steps": "1",
}


async def _add_runs(
    connection: AsyncConnection, tenant: str, first: int, last: int
) -> None:
    await connection.exec_driver_sql(
        "INSERT INTO runs (tenant_id, run_id, flow_id, revision, status, "
        "trigger_kind, trigger_source, triggered_at, deadline, steps, version) "
        f"SELECT '{tenant}', 'run_' || n, 'flow_' || (n % 4), 1, 'running', "
        "'manual', 'test', now(), now() + interval '1 hour', 0, n "
        f"FROM generate_series({first}, {last}) AS n"
    )


class _Ending:
    """``_END`` prepared by name on one session, as asyncpg prepares it."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._compiled = _END.compile(dialect=connection.dialect)

    async def prepare(self) -> None:
        await self._connection.exec_driver_sql(f"PREPARE ending AS {self._compiled}")

    def _arguments(self, tenant: str, run: int, version: int) -> str:
        given = _ARGUMENTS | {
            "end_version": str(version),
            "key_tenant": f"'{tenant}'",
            "key_run": f"'run_{run}'",
        }
        order = self._compiled.positiontup or []
        return ", ".join(given.get(name, "NULL") for name in order)

    async def execute(self, tenant: str, run: int, version: int) -> None:
        arguments = self._arguments(tenant, run, version)
        await self._connection.exec_driver_sql(f"EXECUTE ending({arguments})")

    async def plan(self, tenant: str, run: int, version: int) -> str:
        arguments = self._arguments(tenant, run, version)
        return await _plan(self._connection, f"EXECUTE ending({arguments})")


async def _plan(connection: AsyncConnection, statement: str) -> str:
    explained = await connection.exec_driver_sql(f"EXPLAIN {statement}")
    return "\n".join(row[0] for row in explained)


async def test_a_run_is_ended_through_its_key_after_the_table_grew(
    engine: AsyncEngine,
) -> None:
    # Postgres would keep a generic plan after five executions. Made while the
    # table held ten runs, that plan scanned every run of the tenant for each
    # update once the table had grown (nextra/readmodels/database.py).
    async with engine.connect() as connection:
        ending = _Ending(connection)
        await _add_runs(connection, "tenant", 1, 10)
        await ending.prepare()
        for run in range(1, 9):
            await ending.execute("tenant", run, 100)
        await _add_runs(connection, "tenant", 11, 5000)
        plan = await ending.plan("tenant", 4000, 10_000)

    assert "pk_runs" in plan, plan


async def test_a_run_of_a_tenant_new_to_the_statistics_is_ended_through_its_key(
    engine: AsyncEngine,
) -> None:
    # Statistics that have not seen a tenant estimate one row for it. Any index
    # that began with tenant_id then cost the same as the key, and the flood of
    # a new tenant's runs was ended by scans of all its runs (migration 0005).
    async with engine.connect() as connection:
        ending = _Ending(connection)
        await _add_runs(connection, "known", 1, 5000)
        await connection.exec_driver_sql("ANALYZE runs")
        await _add_runs(connection, "new", 1, 5000)
        await ending.prepare()
        prepared = await ending.plan("new", 42, 10_000)
        simple = await _plan(
            connection,
            "UPDATE runs SET steps = 1 "
            "WHERE tenant_id = 'new' AND run_id = 'run_42' AND version < 10000",
        )

    assert "pk_runs" in prepared, prepared
    assert "pk_runs" in simple, simple
