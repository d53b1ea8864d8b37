"""The HTTP and WebSocket edge: Litestar routes over use cases and read models."""

from nextra.api.app import ApiContext, create_app

__all__ = ("ApiContext", "create_app")
