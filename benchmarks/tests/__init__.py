"""Tests of the benchmark tools (run with ``python -m pytest benchmarks/tests``)."""
