"""Benchmarks: `python -m bench` (or `nox -s bench`) runs them all; see docs/performance.md."""
