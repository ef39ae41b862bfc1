"""Benchmarks; each module runs on its own and records its results in RESULTS.md."""
