"""Embedded servers for development and tests: NATS from its wheel, PostgreSQL from its."""
