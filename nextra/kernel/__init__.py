"""The floor every layer stands on: ids, errors, settings and logging setup."""
