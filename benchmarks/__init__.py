"""Benchmarks of ``wavespeed_async`` against the official SDK and a hand-written floor.

Run everything with one command from the project root::

    python -m benchmarks            # full run, a few minutes on 2 cores
    python -m benchmarks --quick    # smoke run, about a minute

See ``docs/benchmarks.md`` for what is measured and how.
"""
