"""``python -m benchmarks.charts [JSON] [--out DIR]``: redraw the charts from a results file."""

from __future__ import annotations

import sys

from benchmarks._charts import main

if __name__ == "__main__":
    sys.exit(main())
