"""The Litestar application factory."""

from __future__ import annotations

import contextlib

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from nats.aio.subscription import Subscription

import nextra
from nextra.api.access import AccessController
from nextra.api.context import ApiContext
from nextra.api.flows import FlowsController
from nextra.api.health import health, metrics_text, ready
from nextra.api.identity import provide_principal
from nextra.api.live import flow_live, run_live
from nextra.api.observability import observe_requests
from nextra.api.openapi import describe_problems
from nextra.api.problems import EXCEPTION_HANDLERS
from nextra.api.run_history import list_runs, show_run
from nextra.api.runs import RunsController, TriggersController
from nextra.api.webhooks import clerk_webhook

__all__ = ("ApiContext", "create_app")

MAX_BODY_BYTES = 1024 * 1024


def create_app(context: ApiContext) -> Litestar:
    """Build the API around a running platform's context."""

    def provide_context() -> ApiContext:
        return context

    following: list[Subscription] = []

    async def follow_tenants() -> None:
        if context.nats is not None:
            following.append(await context.tenant_cache.follow(context.nats))

    async def unfollow_tenants() -> None:
        for subscription in following:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        following.clear()

    config = AppConfig(
        route_handlers=[
            health,
            ready,
            metrics_text,
            FlowsController,
            AccessController,
            TriggersController,
            RunsController,
            list_runs,
            show_run,
            run_live,
            flow_live,
            clerk_webhook,
        ],
        dependencies={
            "context": Provide(provide_context, sync_to_thread=False),
            "principal": Provide(provide_principal),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[follow_tenants],
        on_shutdown=[unfollow_tenants],
        middleware=[observe_requests],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Nextra",
            version=nextra.__version__,
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key (nx_...) or a Clerk session token",
                    )
                }
            ),
        ),
        logging_config=None,
        debug=False,
    )
    app = Litestar.from_config(config)
    describe_problems(app.openapi_schema)
    return app
