"""Benchmarks: scripts and results, not collected by pytest. Run with ``./run bench``."""
