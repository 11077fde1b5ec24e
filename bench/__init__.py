"""Benchmarks: `python -m bench.<name>` (see docs/BENCHMARKS.md)."""
