"""Keeps one projection up to date: fetch a batch, apply it with the checkpoint, ack.

Exactly-once effects on at-least-once delivery: each batch and the checkpoint
commit in one transaction, events at or below the checkpoint are skipped, and the
acknowledgement goes out only after the commit. One runner per projection is
active at a time (a Postgres advisory lock); others wait as standbys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.eventstore.consumers import Delivery, DurableSubscription, open_durable
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel import metrics
from nextra.kernel.errors import EventStoreError, ProjectionError
from nextra.readmodels.checkpoints import ensure_checkpoint, lock_checkpoint
from nextra.readmodels.projection import Projection, ProjectionSpec
from nextra.readmodels.tables import projection_checkpoints

__all__ = ("ProjectionRunner",)

log = structlog.stdlib.get_logger("nextra.projector")


class ProjectionRunner:
    """Drives one projection from its durable consumer.

    Args:
        spec: The catalogue entry (name, version, subject).
        projection: The code that applies events.
        engine: The read-model database.
        store: The event store whose stream it follows.
        batch_size: Most events fetched and committed together.
    """

    def __init__(
        self,
        spec: ProjectionSpec,
        projection: Projection,
        engine: AsyncEngine,
        store: JetStreamEventStore,
        nc: object,
        *,
        batch_size: int = 500,
    ) -> None:
        self.spec = spec
        self.projection = projection
        self._engine = engine
        self._store = store
        self._nc = nc
        self._batch_size = batch_size
        self.applied = 0

    @property
    def consumer_name(self) -> str:
        return f"nx_projection_{self.spec.name}"

    async def run(self, stopping: asyncio.Event) -> None:
        """Project until ``stopping`` is set, surviving outages of NATS or Postgres."""
        structlog.contextvars.bind_contextvars(projection=self.spec.name)
        delay = 0.5
        while not stopping.is_set():
            try:
                async with self._leadership(stopping) as leading:
                    if not leading:
                        return
                    await self._consume(stopping)
                    return
            except ProjectionError:
                raise
            except (EventStoreError, OSError, DBAPIError, OperationalError) as error:
                log.warning(
                    "projection.retrying",
                    projection=self.spec.name,
                    error=str(error),
                    retry_in_s=delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, 10.0)

    @contextlib.asynccontextmanager
    async def _leadership(self, stopping: asyncio.Event) -> AsyncIterator[bool]:
        key = f"nextra.projection.{self.spec.name}"
        async with self._engine.connect() as connection:
            while True:
                acquired = (
                    await connection.execute(
                        text("SELECT pg_try_advisory_lock(hashtext(:key))"),
                        {"key": key},
                    )
                ).scalar()
                await connection.commit()
                if acquired:
                    break
                log.debug("projection.standby", projection=self.spec.name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)
                if stopping.is_set():
                    yield False
                    return
            try:
                yield True
            finally:
                with contextlib.suppress(Exception):
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key}
                    )
                    await connection.commit()

    async def _consume(self, stopping: asyncio.Event) -> None:
        async with self._engine.begin() as connection:
            await ensure_checkpoint(connection, self.spec.name, self.spec.version)
            checkpoint = await lock_checkpoint(connection, self.spec.name)
        if checkpoint.version != self.spec.version:
            message = (
                f"projection {self.spec.name} holds version {checkpoint.version} but "
                f"the catalogue says {self.spec.version}; run "
                f"`nextra projections rebuild {self.spec.name}`"
            )
            raise ProjectionError(
                message,
                expected=self.spec.version,
                got=checkpoint.version,
                where=self.spec.name,
            )

        subscription = await open_durable(
            self._nc,  # type: ignore[arg-type]
            self._store,
            name=self.consumer_name,
            subject=self.spec.subject,
            after=checkpoint.last_sequence,
        )
        log.info(
            "projection.started",
            projection=self.spec.name,
            after=checkpoint.last_sequence,
        )
        try:
            linger = self.spec.linger_ms / 1000
            while not stopping.is_set():
                deliveries = await subscription.fetch(self._batch_size, timeout=0.5)
                if deliveries:
                    await self.handle(deliveries, subscription)
                if linger and 0 < len(deliveries) < self._batch_size:
                    await asyncio.sleep(linger)
        finally:
            await subscription.close()

    async def handle(
        self, deliveries: Sequence[Delivery], subscription: DurableSubscription
    ) -> int:
        """Apply one fetched batch and acknowledge it; how many events were new."""
        started = time.perf_counter()
        applied = await self.apply_batch(deliveries)
        await subscription.ack(deliveries[-1])

        pending = deliveries[-1].msg.metadata.num_pending or 0
        metrics.PROJECTION_LAG.labels(projection=self.spec.name).set(pending)
        log.debug(
            "projection.batch_applied",
            projection=self.spec.name,
            events=applied,
            skipped=len(deliveries) - applied,
            last_sequence=deliveries[-1].sequence,
            lag=pending,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return applied

    async def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        """Apply deliveries past the checkpoint and move it, in one transaction."""
        async with self._engine.begin() as connection:
            checkpoint = await lock_checkpoint(connection, self.spec.name)
            fresh = [
                d.event for d in deliveries if d.sequence > checkpoint.last_sequence
            ]
            if not fresh:
                return 0
            await self.projection.apply(connection, fresh)
            await connection.execute(
                update(projection_checkpoints)
                .where(projection_checkpoints.c.projection == self.spec.name)
                .values(last_sequence=fresh[-1].sequence, updated_at=datetime.now(UTC))
            )
        self.applied += len(fresh)
        return len(fresh)
