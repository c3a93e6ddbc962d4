"""``python -m benchmarks``: run the benchmarks and write ``latest.md`` and ``latest.json``."""

from __future__ import annotations

import sys

from benchmarks._run import main

if __name__ == "__main__":
    sys.exit(main())
