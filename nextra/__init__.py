"""Nextra: AI agent workflows as a service, event-sourced on NATS JetStream."""

__version__ = "0.1.0"
