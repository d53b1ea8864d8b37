"""Webhooks into Nextra: Clerk's, signed with the Svix scheme."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency

from nextra.api.context import ApiContext
from nextra.app.clerk import ClerkSync
from nextra.auth.errors import AuthenticationError
from nextra.kernel.errors import LimitExceeded, NotFoundError, ValidationError
from nextra.kernel.logging import get_logger

__all__ = ("clerk_webhook",)

log = get_logger("nextra.api")


class _ClerkEvent(msgspec.Struct):
    type: str
    data: dict[str, Any]


@post("/webhooks/clerk", tags=["webhooks"], status_code=200)
async def clerk_webhook(
    request: Request[Any, Any, Any], context: NamedDependency[ApiContext]
) -> Response[dict[str, str]]:
    """Keep tenants and members in sync with Clerk.

    The delivery must carry a valid Svix signature from the last five minutes;
    a delivery seen before is acknowledged and ignored.
    """
    verifier, guard = context.clerk_webhooks, context.replay_guard
    if verifier is None or guard is None:
        message = "Clerk webhooks are not configured on this deployment"
        raise NotFoundError(message, where="/webhooks/clerk")
    body = await request.body()

    try:
        delivery_id = await verifier.verify_once(request.headers, body, guard)
    except AuthenticationError as error:
        if error.reason == "replayed":
            # Svix retries until it gets a 2xx: a repeat we acted on gets one.
            return Response({"status": "already processed"}, status_code=200)
        raise
    try:
        event = msgspec.json.decode(body, type=_ClerkEvent)
    except msgspec.ValidationError as error:
        await guard.forget(delivery_id)
        message = f"the webhook body is not a Clerk event: {error}"
        raise ValidationError(message, where="body") from None

    try:
        handled = await ClerkSync(context.tenants).apply(
            event.type, event.data, delivery_id
        )
    except LimitExceeded as refused:
        # Retrying cannot help until the tenant's tier changes: acknowledge, so
        # Clerk stops, and say why (the members list shows who is in).
        log.warning(
            "clerk.webhook_refused",
            delivery_id=delivery_id,
            type=event.type,
            reason=refused.message,
        )
        return Response({"status": "refused", "reason": refused.message})
    except BaseException:
        # Let Svix deliver it again: nothing of it was acted on for sure, and a
        # repeat is harmless because commands carry the delivery id.
        await guard.forget(delivery_id)
        raise
    log.info("clerk.webhook", delivery_id=delivery_id, type=event.type, handled=handled)
    return Response({"status": "processed" if handled else "ignored"}, status_code=200)
