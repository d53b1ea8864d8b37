"""Keeping tenants and members in step with Clerk's organisations and users.

Clerk reports changes as webhook events; each becomes a tenant command whose id
derives from the delivery id, so a delivery that arrives twice changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from nextra.app.tenants import TenantCommands
from nextra.events.envelope import CommandContext
from nextra.events.tenants import Role
from nextra.kernel.errors import ConflictError, NotFoundError, ValidationError
from nextra.kernel.ids import is_token

__all__ = ("ClerkSync",)

_ROLES: dict[str, Role] = {"org:admin": "admin", "admin": "admin"}


class ClerkSync:
    """Applies one Clerk webhook event to the tenants it concerns."""

    def __init__(self, tenants: TenantCommands) -> None:
        self._tenants = tenants

    async def apply(
        self, event_type: str, data: Mapping[str, Any], delivery_id: str
    ) -> bool:
        """Act on one event; ``False`` when Nextra has nothing to do with it.

        Raises:
            ValidationError: The event lacks a field it needs.
        """
        context = CommandContext(
            command_id=f"clerk.{delivery_id}"[:64],
            actor="clerk",
            correlation_id=delivery_id,
        )
        if event_type == "organization.created":
            await self._create(
                _id(data, "id"),
                str(data.get("name") or "Organisation"),
                owner=_optional_id(data.get("created_by")),
                context=context,
            )
        elif event_type == "organization.updated":
            with contextlib.suppress(NotFoundError):
                await self._tenants.rename(
                    _id(data, "id"), str(data.get("name") or ""), context=context
                )
        elif event_type == "user.created":
            # A user outside any organisation works in a tenant of their own.
            user_id = _id(data, "id")
            await self._create(
                user_id, _display_name(data), owner=user_id, context=context
            )
        elif event_type in {
            "organizationMembership.created",
            "organizationMembership.updated",
        }:
            tenant_id, user_id = _membership(data)
            role = _ROLES.get(str(data.get("role", "")), "member")
            try:
                await self._tenants.add_member(
                    tenant_id, user_id, role=role, email=_email(data), context=context
                )
            except ConflictError:
                await self._tenants.change_member_role(
                    tenant_id, user_id, role, context=context
                )
        elif event_type == "organizationMembership.deleted":
            tenant_id, user_id = _membership(data)
            with contextlib.suppress(NotFoundError):
                await self._tenants.remove_member(tenant_id, user_id, context=context)
        else:
            return False
        return True

    async def _create(
        self, tenant_id: str, name: str, *, owner: str | None, context: CommandContext
    ) -> None:
        with contextlib.suppress(ConflictError):
            await self._tenants.create(tenant_id, name, owner=owner, context=context)


def _id(data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not is_token(value):
        message = f"the Clerk event's {field} is missing or not an id"
        raise ValidationError(
            message, expected="an id", got=value, where=f"data.{field}"
        )
    return value


def _optional_id(value: object) -> str | None:
    return value if isinstance(value, str) and is_token(value) else None


def _membership(data: Mapping[str, Any]) -> tuple[str, str]:
    organization = data.get("organization") or {}
    user = data.get("public_user_data") or {}
    if not isinstance(organization, Mapping) or not isinstance(user, Mapping):
        message = "the membership event lacks its organization or user"
        raise ValidationError(message, where="data")
    return _id(organization, "id"), _id(user, "user_id")


def _email(data: Mapping[str, Any]) -> str:
    user = data.get("public_user_data") or {}
    identifier = user.get("identifier") if isinstance(user, Mapping) else None
    return identifier if isinstance(identifier, str) else ""


def _display_name(data: Mapping[str, Any]) -> str:
    parts = [data.get("first_name"), data.get("last_name")]
    name = " ".join(part for part in parts if isinstance(part, str) and part)
    return name or str(data.get("username") or data.get("id"))
