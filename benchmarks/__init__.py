"""Benchmarks run by hand against real servers; see docs/performance.md."""
