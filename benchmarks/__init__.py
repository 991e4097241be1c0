"""Benchmarks and the load/fault harness (``benchmarks/loadtest.py``); see docs/benchmarks.md."""
